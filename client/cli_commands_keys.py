"""``bp keygen`` and ``bp key list|export|publish|published``: the keyring and its public keys.

Only ``publish`` and ``published`` talk to the gateway; the others touch the local keyring
alone. Private halves are created under a passphrase and never leave the keyring: what is
printed or published is a public key or a key id.
"""

from __future__ import annotations

from client.cli_context import CommandContext
from client.cli_keys import read_passphrase
from client.errors import KeyExists
from client.exit_codes import EXIT_OK, UsageError

__all__ = ["cmd_key_export", "cmd_key_list", "cmd_key_publish", "cmd_key_published", "cmd_keygen"]


def cmd_keygen(ctx: CommandContext) -> int:
    args = ctx.args
    if args.bits is not None and args.type != "rsa":
        raise UsageError("--bits applies to --type rsa only")
    keyring = ctx.keyring()
    if keyring.versions(args.name):
        raise KeyExists(f"a key named {args.name!r} already exists in {keyring.path}")
    passphrase = read_passphrase(f"passphrase for the new key {args.name!r}", confirm=True)
    info = keyring.generate(args.name, args.type, passphrase, bits=args.bits or 3072)
    print(f"{info.name} v{info.version} {info.type} {info.key_id}", file=ctx.stdout)
    ctx.say(f"created in {keyring.path}; export the public key with: bp key export {info.name}")
    return EXIT_OK


def cmd_key_list(ctx: CommandContext) -> int:
    infos = ctx.keyring().list_keys()
    if not infos:
        ctx.say(f"no keys in {ctx.keyring().path}; create one with: bp keygen NAME")
        return EXIT_OK
    width = max(4, *(len(info.name) for info in infos))
    print(f"{'NAME':<{width}}  VERSION  TYPE    KEY ID{'':<29}  CREATED", file=ctx.stdout)
    for info in infos:
        print(
            f"{info.name:<{width}}  {info.version:<7}  {info.type:<6}  {info.key_id:<35}"
            f"  {info.created}",
            file=ctx.stdout,
        )
    return EXIT_OK


def cmd_key_export(ctx: CommandContext) -> int:
    ctx.stdout.write(ctx.keyring().export_public_pem(ctx.args.name, ctx.args.version))
    return EXIT_OK


def cmd_key_publish(ctx: CommandContext) -> int:
    """Publish a keyring public key; publishing the same key again is a no-op, not an error
    (checked by listing first, so a retry after a lost answer also ends in success)."""
    keyring = ctx.keyring()
    info = keyring.info(ctx.args.name, ctx.args.version)
    pem = keyring.export_public_pem(info.name, info.version)
    with ctx.api() as api:
        published = {(k.key_id, k.key_version): k for k in api.published_keys()}
        same = published.get((info.key_id, info.version))
        if same is not None:
            if same.public_key_pem.strip() != pem.strip():
                raise KeyExists(
                    f"{info.key_id} v{info.version} is published with a different public key"
                )
            ctx.say(f"{info.name} v{info.version} ({info.key_id}) is already published")
            wrap_alg = same.wrap_alg
        else:
            wrap_alg = api.publish_key(info.key_id, info.version, pem)
            ctx.say(f"published {info.name} v{info.version} for tenant writers and imports")
    print(f"{info.name} v{info.version} {info.key_id} {wrap_alg}", file=ctx.stdout)
    return EXIT_OK


def cmd_key_published(ctx: CommandContext) -> int:
    with ctx.api() as api:
        keys = api.published_keys()
    if not keys:
        ctx.say("no public keys are published for this tenant; publish one: bp key publish NAME")
        return EXIT_OK
    local = {info.key_id: f"{info.name} v{info.version}" for info in ctx.keyring().list_keys()}
    print(f"{'KEY ID':<35}  VERSION  {'ALGORITHM':<24}  KEYRING", file=ctx.stdout)
    for key in keys:
        print(
            f"{key.key_id:<35}  {key.key_version:<7}  {key.wrap_alg:<24}  "
            f"{local.get(key.key_id, '-')}",
            file=ctx.stdout,
        )
    return EXIT_OK
