"""What one gateway replica holds for its lifetime: the data path, plus the master key that
opens SigV4 secrets and seals backend credentials (only the gateway needs it), the keys derived
from it (the deployment's signing key, the placement-proof pseudonym key), the OIDC
verifier of admin bearer tokens (None when no issuer is configured), the STS trust rules
with their own verifier (None when no tenant identity file is configured), and the request
admission state in Redis (replay cache, rate limits)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from actors.audit_trail import AuditTrail
from actors.data_path import DataPath
from actors.master_key import load_master_key
from core.admin_roles import load_identity_config
from core.deployment_key import DeploymentKey
from core.placement_proof import PSEUDONYM_PURPOSE
from core.sealing import MasterKey
from core.settings import Settings
from core.tenant_identities import TenantIdentityConfig, load_tenant_identities
from gateway.oidc import OidcVerifier
from schema.admission import AdmissionStore
from schema.audit import GroupAppender

__all__ = ["GatewayContext"]


@dataclass
class GatewayContext(DataPath):
    master_key: MasterKey = field(kw_only=True)
    oidc: OidcVerifier | None = field(default=None, kw_only=True)
    #: The STS trust rules and the verifier of their issuers' tokens (``gateway/sts.py``);
    #: None when ``BP_TENANT_OIDC_FILE`` is not set.
    tenant_identities: TenantIdentityConfig | None = field(default=None, kw_only=True)
    tenant_oidc: OidcVerifier | None = field(default=None, kw_only=True)
    #: The replay cache and rate limits in Redis (gateway/admission.py); None: not checked.
    admission: AdmissionStore | None = field(default=None, kw_only=True)

    @cached_property
    def access_audit(self) -> GroupAppender:
        """The replica's one appender of access entries (``gateway/s3/access_log.py``):
        concurrent requests' entries share a transaction (group commit)."""
        return GroupAppender(self.store.db, self.store.audit)

    @cached_property
    def deployment_key(self) -> DeploymentKey:
        """Signs placement proofs; derived once per replica (HKDF + key generation)."""
        return DeploymentKey.from_master(self.master_key)

    @cached_property
    def pseudonym_key(self) -> bytes:
        """The HMAC key of the per-tenant backend pseudonyms in placement proofs."""
        return self.master_key.derive(PSEUDONYM_PURPOSE)[0]

    @classmethod
    async def start(cls, settings: Settings) -> GatewayContext:
        master = load_master_key(settings.master_key_path.resolve())
        oidc = None
        if settings.admin_oidc_file:
            config = load_identity_config(Path(settings.admin_oidc_file).read_text())
            oidc = OidcVerifier(config) if config.issuers else None
        tenants, tenant_oidc = None, None
        if settings.tenant_oidc_file:
            tenants = load_tenant_identities(Path(settings.tenant_oidc_file).read_text())
            tenant_oidc = OidcVerifier(tenants.identity) if tenants.issuers else None
        return await cls.open(
            settings,
            master_key=master,
            oidc=oidc,
            tenant_identities=tenants,
            tenant_oidc=tenant_oidc,
            admission=AdmissionStore(settings.redis_url),
        )

    async def close(self) -> None:
        await super().close()
        if self.admission is not None:
            await self.admission.close()

    def audit_trail(self) -> AuditTrail:
        """The audit checkpoints and their verification, signed with the deployment key."""
        return AuditTrail.of(self, self.master_key)
