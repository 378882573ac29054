"""Build variables as BuildKit sets them.

ARG and ENV of the same name: BuildKit keeps one ordered environment that both set
(dispatchArg and dispatchEnv call AddEnv), so the later one wins for ${...} and RUN, while
the image's Env holds only ENV values. Proxy build args reach RUN without an ARG line.
Checked against BuildKit (docker 20.10's dockerd) by the differential cases args_scoping,
args_stage_order and proxy_args."""

from __future__ import annotations

from dataclasses import dataclass, field

from distill.builder.configsteps import arg, env
from distill.builder.state import StageState
from distill.dockerfile import instructions as ins
from distill.dockerfile import typed
from distill.dockerfile.parser import parse
from distill.dockerfile.shell import Lexer
from distill.image.image import Image
from distill.oci.config import ImageConfig, RuntimeConfig


@dataclass
class _Ctx:
    build_args: dict[str, str] = field(default_factory=dict)
    global_args: dict[str, str] = field(default_factory=dict)
    platform_args: dict[str, str] = field(default_factory=dict)
    lexer: Lexer = field(default_factory=Lexer)


def _run(lines: str, ctx: _Ctx, base_env: tuple[str, ...] = ()) -> StageState:
    state = StageState(Image(ImageConfig(config=RuntimeConfig(env=base_env))))
    for node in parse(lines, "Dockerfile"):
        inst = typed.to_instruction(node)
        state = arg(ctx, state, inst) if isinstance(inst, ins.Arg) else \
            env(ctx, state, inst)  # type: ignore[arg-type]
    return state


def test_the_later_of_env_and_arg_wins() -> None:
    state = _run("ENV W=env\nARG W=arg\nENV AFTER=$W\n", _Ctx())
    assert state.expansion_env()["W"] == "arg"
    assert state.runtime.env_dict() == {"W": "env", "AFTER": "arg"}
    state = _run("ARG V=arg\nENV V=env SAME=$V\n", _Ctx(build_args={"V": "cli"}))
    assert state.expansion_env()["V"] == "env"
    assert state.runtime.env_dict()["SAME"] == "cli"   # values expand before the ENV


def test_arg_after_base_env_wins_with_a_value_only() -> None:
    state = _run("ARG B\nARG C=arg\n", _Ctx(), base_env=("B=base", "C=base"))
    assert state.expansion_env() == {"B": "base", "C": "arg"}
    state = _run("ARG B\n", _Ctx(global_args={"B": "global"}), base_env=("B=base",))
    assert state.expansion_env()["B"] == "global"


def test_redeclared_arg_without_a_value_keeps_its_value() -> None:
    state = _run("ARG V=1\nARG V\nARG N\n", _Ctx())
    assert state.expansion_env() == {"V": "1"}
    state = _run("ARG V=1\nENV V=env\nARG V\n", _Ctx())
    assert state.expansion_env()["V"] == "env"


def test_proxy_build_args_reach_run_under_both_names() -> None:
    """BuildKit sets each proxy build arg, given in any case, as both HTTP_PROXY and
    http_proxy (llbsolver proxyEnvList); of two spellings the last in sorted order wins,
    and an empty one is not set."""
    from distill.builder.steps import proxy_env
    assert proxy_env({"no_proxy": "b", "HTTP_PROXY": "a", "X": "y", "FTP_PROXY": ""}) == {
        "HTTP_PROXY": "a", "http_proxy": "a", "NO_PROXY": "b", "no_proxy": "b"}
    assert proxy_env({"HTTPS_PROXY": "upper", "https_proxy": "lower"})["HTTPS_PROXY"] == "lower"
