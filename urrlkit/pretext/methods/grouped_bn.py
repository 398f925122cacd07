"""The shared base of the methods that emulate the paper's 8 devices with BN groups (MoCo v2, InstDis, PIRL)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from urrlkit.config.pretext import MethodSettings
from urrlkit.config.sections import _error_at

if TYPE_CHECKING:
    from urrlkit.pretext.model import BuildContext


class GroupedBNSettings(MethodSettings):
    """A method whose encoder forwards each process's batch in `bn_groups` BN groups, emulating the paper's 8
    devices, each with its own BN statistics over 256 / 8 images (MoCo v2's shuffle-BN, InstDis, PIRL)."""

    bn_groups: int | Literal["auto"] = Field(
        1, description="BN statistics over this many groups per process (MoCo: the key encoder's shuffle-BN, the "
        "keys shuffled across groups and processes); auto = 8 / processes (the paper's 8 GPUs whatever the launch)")

    @field_validator("bn_groups", mode="before")
    @classmethod
    def _groups_or_auto(cls, v: Any) -> Any:
        # One clear line instead of Pydantic's two union-member errors.
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        raise ValueError(f"expected a positive integer or 'auto', got {v!r}")

    def check(self, batch_size: int, image_size: int) -> None:
        # An integer must divide the per-process batch and so the global one; 'auto' depends on the process
        # count, checked at launch (pretext/common.py check_bn_groups).
        if isinstance(self.bn_groups, int) and batch_size % self.bn_groups:
            raise _error_at("pretext.bn_groups", f"{self.bn_groups} does not divide data.batch_size = {batch_size} "
                            "(BN statistics are computed over equal groups of each process's batch)")

    def groups(self, ctx: BuildContext) -> int:
        """BN groups per process for the launch `ctx` describes ("auto" resolved), checked against its batch."""
        from urrlkit.pretext.common import check_bn_groups, resolve_bn_groups

        groups = resolve_bn_groups(self.bn_groups, ctx.processes)
        if ctx.batch_per_process is not None:
            check_bn_groups(groups, ctx.batch_per_process, self.bn_groups)
        return groups
