"""COPY and ADD: sources from the context, a stage, an image, URLs, git or heredocs."""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from distill import owned
from distill.builder import add as addsrc
from distill.builder import remote
from distill.builder.archive import extract_archive_into, is_archive
from distill.builder.contenthash import ContentHashes
from distill.builder.copy import CopyOptions, copy_sources
from distill.builder.layerstep import expand, layer_step, operation
from distill.builder.operation import Operation
from distill.builder.sources import Source, has_glob, resolve_parents_glob, resolve_sources
from distill.builder.state import StageState
from distill.builder.users import resolve_chown
from distill.confine import walk
from distill.dockerfile import instructions as ins
from distill.dockerfile.shell import Lexer
from distill.errors import ContextError, DistillError, DockerfileError
from distill.gopath import clean
from distill.ignore import PatternMatcher
from distill.image.image import Image

if TYPE_CHECKING:
    from distill.builder.stage_context import StageContext


@dataclass(frozen=True)
class TriggerCopy(ins.Copy):
    """``COPY --from`` from an ONBUILD trigger: its source was resolved when the trigger
    was read (the plan knows only the stage's own instructions)."""

    source: Image | None = None



def _entries(sources: list[Source],
             allow: Callable[[Path], bool] | None) -> Iterator[tuple[str, str, os.stat_result]]:
    """(name, host path, lstat) of everything a COPY of ``sources`` reads, in order."""
    for src in sources:
        yield src.rel, str(src.host), os.lstat(src.host)
        if not src.host.is_dir() or src.host.is_symlink():
            continue
        for dirpath, dirnames, filenames in walk(src.host):
            if allow is not None:
                dirnames[:] = [d for d in dirnames if allow(Path(dirpath, d))]
                filenames = [f for f in filenames if allow(Path(dirpath, f))]
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                p = os.path.join(dirpath, name)
                yield os.path.relpath(p, src.host), p, os.lstat(p)


def _tree_digest(hashes: ContentHashes, sources: list[Source],
                 allow: Callable[[Path], bool] | None) -> str:
    """The digest of everything a COPY would read (names, types, modes, owners, bytes),
    through the build's stat cache.

    Not modification times, as BuildKit's content hash leaves them out (and Docker's
    documentation says of COPY): a fresh checkout on another machine (or a stage
    unpacked there from a shared cache) has other times for the same files, and must hit
    the same cache entry. The cached layer then keeps the times of the build that made
    it, as with BuildKit."""
    return hashes.walk_digest(_entries(sources, allow))


def _stat_stamp(entries: Iterable[tuple[str, str, os.stat_result]]) -> str:
    """What every file a COPY reads looks like (inode, size, times, ctime above all,
    which every write moves), from the walk that hashed them and again after the copy:
    a change means the layer may hold other bytes than the key names."""
    h = hashlib.sha256()
    for name, _, st in entries:
        h.update(f"{name}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mode}\0"
                 f"{st.st_uid}\0{st.st_gid}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\n"
                 .encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _parse_chmod(inst: ins.Copy, value: str) -> int:
    # ASCII octal digits only: int(v, 8) would also take "0o755", "7_5_5", " 755", "+755".
    mode = int(value, 8) if value and all(c in "01234567" for c in value) else -1
    if not 0 <= mode <= 0o7777:
        raise DockerfileError(f"invalid chmod parameter: '{value}'. it should be octal "
                              "string and between 0 and 07777", location=inst.location)
    return mode


# BuildKit expands an unquoted heredoc's body with quotes left alone (ExpandRaw)
_HEREDOC_LEXER = Lexer("\\", skip_process_quotes=True)


def split_pivot(pattern: str) -> tuple[str, str]:
    """--parents: ``a/./b/c`` copies b/c under DEST (BuildKit's ``/./`` pivot);
    without a pivot the path is kept from the root. Returns (pivot, pattern)."""
    parent, sep, _rest = pattern.partition("/./")
    if not sep:
        return ".", pattern
    return os.path.normpath("/" + parent).lstrip("/") or ".", pattern


def heredoc_file_name(name: str, inst: ins.Instruction, used: str, how: str) -> str:
    """The file name a heredoc's delimiter gives (COPY's file, RUN's shebang script);
    a DockerfileError at ``inst`` if it gives none (``used``: what the heredoc is for;
    ``how``: how its name is used). BuildKit makes the file with ``Mkfile(name)`` in
    an empty filesystem, so the name counts as cleaned from '/' (``<</x`` and ``<<./x``
    name ``x``) and only a single component works there. The name is only ever a path
    inside the image: distill's own files on the host get names of its own."""
    component = clean("/" + name)[1:]
    if "\0" in name or not component or "/" in component:
        raise DockerfileError(f"invalid heredoc name for {used}: {name!r}",
                              hint=f"{how}: one path component", location=inst.location)
    return component


def _heredoc_sources(ctx: StageContext, state: StageState, inst: ins.Copy,
                     where: Path) -> list[Source]:
    """COPY <<EOF: each body becomes a file named after its delimiter (mode 0644), made
    on the host as ``where/<n>`` (a name of distill's own)."""
    out = []
    env = state.expansion_env()
    for n, doc in enumerate(inst.contents):
        name = heredoc_file_name(doc.name, inst, "COPY",
                                 "a heredoc's name is the name of the file it makes")
        data = _HEREDOC_LEXER.process_word(doc.content, env) if doc.expand else doc.content
        host = where / f"heredoc-{n}"
        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8", "surrogateescape"))
        os.chmod(host, 0o644)
        out.append(Source(name, host))
    return out


@dataclass(frozen=True)
class _LocalRoot:
    """Where a COPY reads from when that is a directory of the host (the context or a
    local --build-context): its sources are resolved, and hashed, before the key."""

    root: Path
    what: str
    allow: Callable[[Path], bool] | None


def _local_root(ctx: StageContext, inst: ins.Copy) -> _LocalRoot | None:
    if inst.from_ is None:
        return _LocalRoot(ctx.context.root, "the build context",
                          ctx.context.allows if ctx.context.matcher is not None else None)
    if not isinstance(inst, TriggerCopy) and (local := ctx.copy_source_dir(inst)):
        return _LocalRoot(local, f"build context {inst.from_!r}", None)
    return None


def _resolve(root: Path, patterns: list[str], inst: ins.Copy, what: str, escape: bool,
             allow: Callable[[Path], bool] | None,
             add_opts: addsrc.AddOptions | None) -> tuple[list[Source], list[Source]]:
    """The sources the (non-URL) patterns name inside ``root``, and which of them ADD
    unpacks (with ``add_opts``)."""
    sources: list[Source] = []
    archives: list[Source] = []
    for pattern in patterns:
        if add_opts is not None and (addsrc.is_git(pattern) or addsrc.is_url(pattern)):
            continue
        if inst.parents and has_glob(pattern):  # an include pattern: ** and all
            found = resolve_parents_glob(root, pattern, forbid_escape=escape, allow=allow)
        else:
            found = resolve_sources(root, [pattern], what, forbid_escape=escape, allow=allow)
        if add_opts is not None and addsrc.wants_unpack(add_opts, False):
            archives += [s for s in found if is_archive(s.host)]
            found = [s for s in found if not is_archive(s.host)]
        if inst.parents and not has_glob(pattern):
            pivot, _ = split_pivot(pattern)
            found = [replace(src, base=pivot) for src in found]
        sources += found
    return sources, archives


@dataclass(frozen=True)
class _Fetched:
    """A git checkout or a download, as ADD adds it: unpacked (``archive``) or copied."""

    source: Source
    archive: bool
    validators: addsrc.UrlValidators | None

    def identity(self, hashes: ContentHashes) -> dict[str, str]:
        """What the key says of it: a download's sha256 and Last-Modified (as a 304 says
        of it later), a checkout's content."""
        if self.validators is not None:
            return {"sha256": self.validators.sha256,
                    "last_modified": self.validators.last_modified or ""}
        return {"tree": _tree_digest(hashes, [self.source], None)}


def _fetch_remote(stack: ExitStack, pattern: str, opts: addsrc.AddOptions,
                  records: remote.UrlRecords, ident: object = None) -> _Fetched:
    """Fetch a git or URL source for the rest of ``stack``. ``ident``: what its key
    said of it; a fetch that finds other content fails (it changed during the build)."""
    git = addsrc.is_git(pattern)
    tmp = stack.enter_context(owned.temp_dir("distill-add-"))
    seen: list[addsrc.UrlValidators] = []
    expect = ident.get("git_commit") if isinstance(ident, dict) else None
    got = stack.enter_context(addsrc.fetch_git(pattern, tmp, opts, expect) if git else
                              addsrc.fetch_url(pattern, tmp, opts, seen=seen.append))
    validators = seen[0] if seen else None
    if validators is not None:
        records.put(pattern, validators)
        if isinstance(ident, dict) and ident.get("sha256", validators.sha256) != \
                validators.sha256:
            raise ContextError(f"{pattern} changed while the build ran (its server said it "
                               "had not)", hint="build again")
    archive = not git and addsrc.wants_unpack(opts, True) and is_archive(got)
    name = pattern if git or archive else addsrc.url_filename(pattern)
    return _Fetched(Source(name, got), archive, validators)


def copy(ctx: StageContext, state: StageState, inst: ins.Copy) -> StageState:
    patterns = [expand(ctx, state, s) for s in inst.sources]
    excludes = [expand(ctx, state, e) for e in inst.excludes]
    dest = expand(ctx, state, inst.dest)
    if not dest:
        raise DockerfileError("COPY destination is empty", location=inst.location)
    if not posixpath.isabs(dest):
        trailing = dest.endswith("/") or dest in (".", "./")
        dest = posixpath.join(state.workdir, dest)
        dest = posixpath.normpath(dest) + ("/" if trailing else "")
    if len(patterns) + len(inst.contents) > 1 and not dest.endswith("/"):
        raise DockerfileError("when using COPY with more than one source file, the destination "
                              "must be a directory and end with a /", location=inst.location)
    chown = expand(ctx, state, inst.chown) if inst.chown else None
    chmod = _parse_chmod(inst, expand(ctx, state, inst.chmod)) if inst.chmod else None
    adding = isinstance(inst, ins.Add)
    add_opts = addsrc.AddOptions(inst.checksum, inst.keep_git_dir, inst.unpack,
                                 host_network="network.host" in ctx.allow) \
        if isinstance(inst, ins.Add) else None
    if add_opts is not None and add_opts.checksum and any(
            not (addsrc.is_git(p) or addsrc.is_url(p)) for p in patterns):
        raise DockerfileError("checksum can't be specified for non-HTTP(S) sources",
                              location=inst.location)
    try:
        exclude = PatternMatcher(excludes) if excludes else None
    except DistillError as e:
        raise e.at(inst.location) from None
    local = _local_root(ctx, inst)
    image: Image | None = None
    if local is None:
        image = inst.source if isinstance(inst, TriggerCopy) and inst.source else \
            ctx.copy_source_image(inst)

    with ExitStack() as stack:
        # sources outside the context (git, URLs): named by what identifies their
        # content without a fetch where that can be known, else fetched now
        remote_ids: list[tuple[int, dict[str, str]]] = []
        fetched: dict[int, _Fetched] = {}
        for i, pattern in enumerate(patterns):
            if add_opts is None or not (addsrc.is_git(pattern) or addsrc.is_url(pattern)):
                continue
            ctx.sources.note_remote_source()      # such a build is never replayed
            ident = remote.identify(pattern, add_opts, ctx.url_records)
            if ident is None:
                got = fetched[i] = _fetch_remote(stack, pattern, add_opts, ctx.url_records)
                ident = got.identity(ctx.hashes)
            remote_ids.append((i, ident))
        heredocs_dir = stack.enter_context(owned.temp_dir("distill-heredoc-"))
        inline = _heredoc_sources(ctx, state, inst, heredocs_dir)
        # what the step reads, by content: a local root's sources are resolved and hashed
        # now; an image's (a stage's, COPY --from) are its layers, read only on a miss
        inputs: dict[str, object] = {
            "remote": [[i, ident] for i, ident in remote_ids],
            "heredocs": [[s.rel, s.host.read_bytes()] for s in inline]}
        local_found: tuple[list[Source], list[Source]] | None = None
        stamp = ""
        if local is not None:
            local_found = _resolve(local.root, patterns, inst, local.what, True, local.allow,
                                   add_opts)
            walked = [list(_entries(part, local.allow)) for part in local_found]
            stamp = _stat_stamp(e for part in walked for e in part)
            inputs["local"] = [[[s.rel, s.base] for s in part] for part in local_found]
            inputs["local_content"] = [ctx.hashes.walk_digest(part) for part in walked]
        else:
            assert image is not None
            inputs["image"] = [str(d) for d in image.config.diff_ids]
        expanded = {"sources": patterns, "excludes": excludes, "dest": dest, "chown": chown,
                    "chmod": chmod}
        op = operation(ctx, state, inst, expanded=expanded, inputs=inputs,
                       leave_out=frozenset({"source"}))

        def by_content() -> Operation:
            """The image's case on a miss: what the sources hold, not which layers."""
            assert image is not None
            with ctx.rootfs.mounted(image) as mount:
                found = _resolve(mount.merged, patterns, inst, f"--from={inst.from_}", False,
                                 None, add_opts)
                # overlay inodes are the mount's own: a throwaway stat cache
                scratch = ContentHashes()
                content = [_tree_digest(scratch, part, None) for part in found]
            return operation(ctx, state, inst, expanded=expanded, leave_out=frozenset(
                {"source"}), inputs={**{k: v for k, v in inputs.items() if k != "image"},
                                     "image_files": [[[s.rel, s.base] for s in part]
                                                     for part in found],
                                     "image_content": content})

        def work(dest_root: Path) -> None:
            with ExitStack() as mounts:
                if local_found is not None and local is not None:
                    (sources, archives), allow, escape = local_found, local.allow, True
                else:
                    assert image is not None
                    root = mounts.enter_context(ctx.rootfs.mounted(image)).merged
                    sources, archives = _resolve(root, patterns, inst, f"--from={inst.from_}",
                                                 False, None, add_opts)
                    allow, escape = None, False
                remote_files: list[Source] = []
                for i, ident in remote_ids:
                    assert add_opts is not None          # only ADD has remote sources
                    got = fetched.get(i) or _fetch_remote(mounts, patterns[i], add_opts,
                                                          ctx.url_records, ident)
                    (archives if got.archive else remote_files).append(got.source)
                dest_is_dir = dest.endswith("/") or \
                    len(sources) + len(inline) + len(remote_files) > 1
                owner = resolve_chown(dest_root, chown) if chown else (
                    (0, 0) if escape else None)  # local files are root's; a stage's keep theirs
                follow = not inst.link
                copy_sources(dest_root, sources, dest,
                             CopyOptions(owner=owner, mode=chmod, allow=allow, exclude=exclude,
                                         parents=inst.parents, follow_dest_link=follow),
                             dest_is_dir=dest_is_dir)
                if remote_files:  # not in the context: no .dockerignore filter
                    copy_sources(dest_root, remote_files, dest, CopyOptions(
                        owner=owner or (0, 0), mode=chmod, follow_dest_link=follow),
                                 dest_is_dir=dest_is_dir)
                for packed in archives:  # members keep their owners; --chown: created dirs
                    extract_archive_into(packed.host, dest_root, dest,
                                         resolve_chown(dest_root, chown) if chown else None)
                if inline:  # inline files are root's (or --chown's), like BuildKit's Mkfile
                    copy_sources(dest_root, inline, dest, CopyOptions(
                        owner=owner or (0, 0), mode=chmod, follow_dest_link=follow),
                                 dest_is_dir=dest_is_dir)
                if local_found is not None and local is not None:
                    try:
                        now = _stat_stamp(e for part in local_found
                                          for e in _entries(part, local.allow))
                    except OSError:
                        now = "gone"
                    if now != stamp:     # the layer may hold bytes the key does not name
                        raise ContextError(f"files of {local.what} changed while they were "
                                           "copied", hint="build again once they are written")

        flags = "".join(f" --{k}={v}" for k, v in (("from", inst.from_), ("chown", chown),
                                                     ("chmod", inst.chmod)) if v)
        if inst.parents:
            flags = " --parents" + flags
        shown = " ".join([*patterns, *(f"<<{doc.name}" for doc in inst.contents)])
        verb = "ADD" if adding else "COPY"
        return layer_step(ctx, state, op, f"{verb}{flags} {shown} {dest}", work,
                          by_content=by_content if image is not None else None)
