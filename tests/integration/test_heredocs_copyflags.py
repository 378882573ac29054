"""Heredocs in RUN and COPY, ``# syntax=``, and COPY --exclude / --parents / --link, built
for real on busybox and checked in the exported filesystem (``type=local``)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.conftest import RunDistill

pytestmark = pytest.mark.integration


def _context(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        path = ctx / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return ctx


def _build(distill: RunDistill, tmp_path: Path, dockerfile: str,
           files: dict[str, str] | None = None, *args: str, check: bool = True):
    ctx = _context(tmp_path, dockerfile, files)
    out = tmp_path / "out"
    proc = distill("build", "--progress", "plain", "--output", f"type=local,dest={out}",
                   *args, str(ctx), check=check)
    return out, proc


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_run_heredoc_script_and_shebang_and_stdin(distill: RunDistill, busybox_image: str,
                                                  tmp_path: Path) -> None:
    dockerfile = (
        f"FROM {busybox_image}\n"
        "ENV WHO=world\n"
        "RUN <<EOF\n"
        "echo \"hello $WHO\" > /script.txt\n"
        "echo second >> /script.txt\n"
        "EOF\n"
        "RUN <<-'EOF'\n"
        "\techo tabs > /chomp.txt\n"
        "\tEOF\n"
        "RUN <<EOF\n"
        "#!/bin/sh\n"
        "echo \"shebang $0\" > /shebang.txt\n"
        "EOF\n"
        "RUN cat <<EOF > /stdin.txt\n"
        "from stdin $WHO\n"
        "EOF\n"
        "RUN cat <<'A' <<B > /two.txt && cat 3<<C <&3 >> /two.txt\n"
        "first $WHO\n"
        "A\n"
        "second $WHO\n"
        "B\n"
        "third\n"
        "C\n"
    )
    out, _ = _build(distill, tmp_path, dockerfile)
    assert (out / "script.txt").read_text() == "hello world\nsecond\n"
    assert (out / "chomp.txt").read_text() == "tabs\n"
    # BuildKit runs /dev/pipes/EOF; distill's sandbox owns /dev, so the file is elsewhere
    assert (out / "shebang.txt").read_text() == "shebang /run/distill-pipes/EOF\n"
    assert not (out / "run" / "distill-pipes").exists()
    assert (out / "stdin.txt").read_text() == "from stdin world\n"
    # the shell reads the later heredoc for stdin (B wins over A), then fd 3
    assert (out / "two.txt").read_text() == "second world\nthird\n"


def test_copy_heredoc_files(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    dockerfile = (
        f"FROM {busybox_image}\n"
        "ARG NAME=distill\n"
        "ENV GREETING=hi\n"
        "COPY <<EOF /etc/expanded.txt\n"
        "\"$GREETING\" from ${NAME}\n"
        "EOF\n"
        "COPY <<'EOF' /etc/raw.txt\n"
        "$GREETING stays\n"
        "EOF\n"
        "COPY <<-EOF /etc/chomped.txt\n"
        "\t\tindented\n"
        "\tEOF\n"
        "COPY --chown=12:34 <<one <<two /multi/\n"
        "first\n"
        "one\n"
        "second\n"
        "two\n"
        "COPY --chmod=0600 <<EOF /secret.txt\n"
        "s\n"
        "EOF\n"
    )
    out, _ = _build(distill, tmp_path, dockerfile)
    assert (out / "etc/expanded.txt").read_text() == "\"hi\" from distill\n"
    assert (out / "etc/raw.txt").read_text() == "$GREETING stays\n"
    assert (out / "etc/chomped.txt").read_text() == "indented\n"
    assert (out / "multi/one").read_text() == "first\n"
    assert (out / "multi/two").read_text() == "second\n"
    assert stat.S_IMODE(os.stat(out / "etc/raw.txt").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(out / "secret.txt").st_mode) == 0o600


def test_copy_heredoc_owner(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    dockerfile = (
        f"FROM {busybox_image}\n"
        "COPY --chown=12:34 <<EOF /owned.txt\n"
        "x\n"
        "EOF\n"
        "RUN stat -c '%u:%g %a' /owned.txt > /owner.txt\n"
    )
    out, _ = _build(distill, tmp_path, dockerfile)
    assert (out / "owner.txt").read_text() == "12:34 644\n"


def test_copy_heredoc_as_destination_is_an_error(distill: RunDistill, busybox_image: str,
                                                 tmp_path: Path) -> None:
    _, proc = _build(distill, tmp_path, f"FROM {busybox_image}\nCOPY a <<EOF\nEOF\n",
                     {"a": "a"}, check=False)
    assert proc.returncode != 0
    assert "COPY cannot accept a heredoc as a destination" in proc.stderr


def test_syntax_directive(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    for i, ref in enumerate(["docker/dockerfile:1", "docker/dockerfile:1.7",
                             "docker/dockerfile:1.7.1", "docker/dockerfile:1-labs",
                             "docker.io/docker/dockerfile:1.4"]):
        out, _ = _build(distill, tmp_path / str(i),
                        f"# syntax={ref}\n# check=skip=all\nFROM {busybox_image}\n"
                        "COPY a /a\n", {"a": "ok"})
        assert (out / "a").read_text() == "ok"
    _, proc = _build(distill, tmp_path / "bad",
                     f"# syntax=example.com/my/frontend:2\nFROM {busybox_image}\n",
                     check=False)
    assert proc.returncode != 0
    assert "distill does not run external frontends: example.com/my/frontend:2" in proc.stderr
    assert "Dockerfile:1" in proc.stderr


CONTEXT = {
    "app/main.py": "main", "app/notes.txt": "notes", "app/sub/deep.txt": "deep",
    "app/sub/keep.py": "keep", "app/README.md": "readme",
    "src/a/x.go": "x", "src/b/y.go": "y", "src/b/z.txt": "z",
}


def test_copy_exclude(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    dockerfile = (
        f"FROM {busybox_image}\n"
        "ARG EXT=md\n"
        "COPY --exclude=*.txt --exclude=sub/*.txt --exclude=*.$EXT app /dir/\n"
        "COPY --exclude=**/*.txt src /src/\n"
        "COPY --exclude=*.txt app/* /glob/\n"
    )
    out, _ = _build(distill, tmp_path, dockerfile, CONTEXT)
    assert {p for p in _tree(out / "dir")} == {"main.py", "sub", "sub/keep.py"}
    assert _tree(out / "src") == {"a", "a/x.go", "b", "b/y.go"}
    # each wildcard match is a copy root of its own (BuildKit copies every match as if
    # named): patterns match paths inside it (sub/deep.txt is deep.txt there), and never
    # the match itself (notes.txt is copied)
    assert _tree(out / "glob") == {"README.md", "main.py", "notes.txt", "keep.py"}


def test_copy_exclude_glob_matches_are_alike(distill: RunDistill, busybox_image: str,
                                             tmp_path: Path) -> None:
    """Regression (issue 13): every glob match took the last directory the walk visited
    as its copy root, so ``--exclude=x.txt */x.txt`` left out b/x.txt but not a/x.txt."""
    dockerfile = (
        f"FROM {busybox_image}\n"
        "COPY --exclude=x.txt */x.txt /one/\n"
        "COPY --exclude=x.txt ?/ /two/\n"
    )
    files = {"a/x.txt": "a", "a/y.txt": "ay", "b/x.txt": "b", "b/y.txt": "by"}
    out, _ = _build(distill, tmp_path, dockerfile, files)
    # both matches are copied (the match itself is never excluded); b's is copied last
    assert _tree(out / "one") == {"x.txt"}
    assert (out / "one" / "x.txt").read_text() == "b"
    # inside each matched directory, x.txt is excluded alike
    assert _tree(out / "two") == {"y.txt"}


def test_copy_exclude_wildcard_sources_as_buildkit(distill: RunDistill, busybox_image: str,
                                                   tmp_path: Path) -> None:
    """BuildKit's own case (frontend/dockerfile/exclude_patterns_test.go, builder4-6):
    with ``dir*`` as the source, the patterns match inside each matched directory."""
    dockerfile = (
        f"FROM {busybox_image}\n"
        "COPY --exclude=*.mp3 --exclude=*.jpeg --exclude=*.png --exclude=*.pdf "
        "--exclude=*.txt dir* /4/\n"
        "ADD --exclude=*.mp* --exclude=*.jpeg --exclude=*.png --exclude=*.pdf dir* /5\n"
        "ADD --exclude=* dir* /6\n"
    )
    files = {"dir1/file-101.png": "2", "dir1/file-102.txt": "3", "dir1/file-103.jpeg": "4",
             "dir2/file-201.pdf": "6", "dir2/file-202.jpeg": "7", "dir2/file-203.png": "8",
             "dir3/file-301.mp3": "9", "dir3/file-302.mpeg": "10",
             "dir4/file-401.txt": "11"}
    out, _ = _build(distill, tmp_path, dockerfile, files)
    assert _tree(out / "4") == {"file-302.mpeg"}
    assert _tree(out / "5") == {"file-102.txt", "file-401.txt"}
    assert (out / "5" / "file-102.txt").read_text() == "3"
    assert _tree(out / "6") == set()


def test_copy_parents(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    dockerfile = (
        f"FROM {busybox_image} AS base\n"
        "COPY --parents src/*/y.go app/sub /out/\n"
        "COPY --parents ./src/./b/z.txt /pivot\n"
        "COPY --parents --exclude=**/*.txt src/./b /excl/\n"
        f"FROM {busybox_image}\n"
        "COPY --from=base --parents /out/src/b /fromstage/\n"
        "COPY --link --from=base /out/app /linked/\n"
    )
    out, _ = _build(distill, tmp_path, dockerfile, CONTEXT)
    assert _tree(out / "fromstage") == {"out", "out/src", "out/src/b", "out/src/b/y.go"}
    assert _tree(out / "linked") == {"sub", "sub/deep.txt", "sub/keep.py"}


def test_copy_parents_layout(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    dockerfile = (
        f"FROM {busybox_image}\n"
        "COPY --parents src/*/y.go app/sub /out/\n"
        "COPY --parents ./src/./b/z.txt /pivot\n"
        "COPY --parents --exclude=**/*.txt src/./b /excl/\n"
        "COPY --link=true app/main.py /linked.py\n"
    )
    out, _ = _build(distill, tmp_path, dockerfile, CONTEXT)
    assert _tree(out / "out") == {"src", "src/b", "src/b/y.go", "app", "app/sub",
                                  "app/sub/deep.txt", "app/sub/keep.py"}
    assert _tree(out / "pivot") == {"b", "b/z.txt"}
    assert _tree(out / "excl") == {"b", "b/y.go"}
    assert (out / "linked.py").read_text() == "main"
