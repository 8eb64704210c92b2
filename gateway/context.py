"""What one gateway replica holds for its lifetime: the data path, plus the master key that
opens SigV4 secrets and seals backend credentials (only the gateway needs it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.data_path import DataPath
from core.sealing import MasterKey
from core.settings import Settings

__all__ = ["GatewayContext"]


@dataclass
class GatewayContext(DataPath):
    master_key: MasterKey = field(kw_only=True)

    @classmethod
    async def start(cls, settings: Settings) -> GatewayContext:
        master = MasterKey.from_file_text(settings.master_key_path.read_text())
        return await cls.open(settings, master_key=master)
