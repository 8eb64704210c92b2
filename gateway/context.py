"""What one gateway replica holds for its lifetime: the data path, plus the master key that
opens SigV4 secrets and seals backend credentials (only the gateway needs it), and the OIDC
verifier of admin bearer tokens (None when no issuer is configured)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from actors.audit_trail import AuditTrail
from actors.data_path import DataPath
from core.admin_roles import load_identity_config
from core.sealing import MasterKey
from core.settings import Settings
from gateway.oidc import OidcVerifier

__all__ = ["GatewayContext"]


@dataclass
class GatewayContext(DataPath):
    master_key: MasterKey = field(kw_only=True)
    oidc: OidcVerifier | None = field(default=None, kw_only=True)

    @classmethod
    async def start(cls, settings: Settings) -> GatewayContext:
        master = MasterKey.from_file_text(settings.master_key_path.read_text())
        oidc = None
        if settings.admin_oidc_file:
            config = load_identity_config(Path(settings.admin_oidc_file).read_text())
            oidc = OidcVerifier(config) if config.issuers else None
        return await cls.open(settings, master_key=master, oidc=oidc)

    def audit_trail(self) -> AuditTrail:
        """The audit checkpoints and their verification, signed with the deployment key."""
        return AuditTrail.of(self, self.master_key)
