"""The OCI image configuration as an immutable value."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from distill.errors import ImageError
from distill.oci.digest import Digest
from distill.oci.platform import Platform


@dataclass(frozen=True)
class History:
    created_by: str
    empty_layer: bool = False
    created: str | None = None
    comment: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"created_by": self.created_by}
        if self.created:
            d["created"] = self.created
        if self.comment:
            d["comment"] = self.comment
        if self.empty_layer:
            d["empty_layer"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        return cls(
            created_by=str(d.get("created_by", "")),
            empty_layer=bool(d.get("empty_layer", False)),
            created=d.get("created"),
            comment=str(d.get("comment", "")),
        )


@dataclass(frozen=True)
class RuntimeConfig:
    """The ``config`` object: what a container started from the image gets."""

    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    user: str = ""
    working_dir: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    stop_signal: str = ""
    # Docker extensions kept in the config (OCI tools ignore unknown fields).
    shell: tuple[str, ...] | None = None
    healthcheck: dict[str, Any] | None = field(default=None, compare=False)
    on_build: tuple[str, ...] = ()

    def env_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for entry in self.env:
            name, _, value = entry.partition("=")
            out[name] = value
        return out

    def with_env(self, name: str, value: str) -> RuntimeConfig:
        """Set a variable: replaced where it stands, else appended (BuildKit's order)."""
        entry = f"{name}={value}"
        entries = list(self.env)
        for i, existing in enumerate(entries):
            if existing.partition("=")[0] == name:
                entries[i] = entry
                break
        else:
            entries.append(entry)
        return replace(self, env=tuple(entries))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.user:
            d["User"] = self.user
        if self.exposed_ports:
            d["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.env:
            d["Env"] = list(self.env)
        if self.entrypoint is not None:
            d["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            d["Cmd"] = list(self.cmd)
        if self.volumes:
            d["Volumes"] = {v: {} for v in self.volumes}
        if self.working_dir:
            d["WorkingDir"] = self.working_dir
        if self.labels:
            d["Labels"] = dict(self.labels)
        if self.stop_signal:
            d["StopSignal"] = self.stop_signal
        if self.shell is not None:
            d["Shell"] = list(self.shell)
        if self.healthcheck is not None:
            d["Healthcheck"] = self.healthcheck
        if self.on_build:
            d["OnBuild"] = list(self.on_build)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RuntimeConfig:
        d = d or {}

        def strs(key: str) -> tuple[str, ...] | None:
            v = d.get(key)
            return None if v is None else tuple(str(x) for x in v)

        return cls(
            env=strs("Env") or (),
            entrypoint=strs("Entrypoint"),
            cmd=strs("Cmd"),
            user=str(d.get("User") or ""),
            working_dir=str(d.get("WorkingDir") or ""),
            labels=tuple(sorted((d.get("Labels") or {}).items())),
            exposed_ports=tuple(sorted(d.get("ExposedPorts") or {})),
            volumes=tuple(sorted(d.get("Volumes") or {})),
            stop_signal=str(d.get("StopSignal") or ""),
            shell=strs("Shell"),
            healthcheck=d.get("Healthcheck"),
            on_build=strs("OnBuild") or (),
        )


@dataclass(frozen=True)
class ImageConfig:
    platform: Platform = field(default_factory=Platform.host)
    config: RuntimeConfig = field(default_factory=RuntimeConfig)
    diff_ids: tuple[Digest, ...] = ()
    history: tuple[History, ...] = ()
    created: str | None = None
    author: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.created:
            d["created"] = self.created
        if self.author:
            d["author"] = self.author
        d.update(self.platform.to_dict())
        d["config"] = self.config.to_dict()
        d["rootfs"] = {"type": "layers", "diff_ids": [str(x) for x in self.diff_ids]}
        if self.history:
            d["history"] = [h.to_dict() for h in self.history]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageConfig:
        try:
            rootfs = d.get("rootfs") or {}
            return cls(
                platform=Platform.from_dict(d),
                config=RuntimeConfig.from_dict(d.get("config")),
                diff_ids=tuple(Digest(x) for x in rootfs.get("diff_ids") or ()),
                history=tuple(History.from_dict(h) for h in d.get("history") or ()),
                created=d.get("created"),
                author=str(d.get("author") or ""),
            )
        except (TypeError, AttributeError, ValueError) as e:
            raise ImageError(f"malformed image config: {e}") from None
