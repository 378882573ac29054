"""The state a stage carries from one instruction to the next."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from distill.image.image import Image
from distill.oci.config import RuntimeConfig

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ("/bin/sh", "-c")


@dataclass(frozen=True)
class StageState:
    image: Image
    #: ARG values in effect: declared in this stage (or the stage it is based on) and not
    #: set again by a later ENV (see expansion_env)
    args: dict[str, str] = field(default_factory=dict)
    cmd_set: bool = False                                 # CMD given in this stage

    @property
    def runtime(self) -> RuntimeConfig:
        return self.image.runtime

    def expansion_env(self) -> dict[str, str]:
        """Variables for ${...} and RUN: the image's Env, and the ARG values in effect.

        As in BuildKit (one ordered environment that ENV and ARG both set), the later of an
        ENV and an ARG of the same name wins: ENV drops the ARG's value from ``args``, and a
        value an ARG sets after an ENV overrides the ENV here (not in the image's Env)."""
        return {**self.runtime.env_dict(), **self.args}

    def run_env(self) -> dict[str, str]:
        env = self.expansion_env()
        env.setdefault("PATH", DEFAULT_PATH)
        return env

    @property
    def shell(self) -> tuple[str, ...]:
        return self.runtime.shell or DEFAULT_SHELL

    @property
    def workdir(self) -> str:
        return self.runtime.working_dir or "/"

    def with_image(self, image: Image) -> StageState:
        return replace(self, image=image)

    def with_runtime(self, runtime: RuntimeConfig, created_by: str) -> StageState:
        return replace(self, image=self.image.with_runtime(runtime).add_history(created_by))
