"""``methodhub ca add|verify|list|remove|dev-cert``: the certificate authorities devices of type
``certificateAuthority`` authenticate with, registered with a proof of possession as Azure IoT Hub
does (add → a verification code; a certificate with that code as CN signed by the CA's key → verified),
and test certificates for devices (``dev-cert``)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from methodhub.cli.exits import EXIT_USAGE, fail
from methodhub.cli.registry import open_hub_registry
from methodhub.errors import HubError

if TYPE_CHECKING:
    from methodhub.registry import Registry


def add_ca_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    ca = commands.add_parser(
        "ca",
        parents=[common],
        help="manage the CAs X.509 devices authenticate with; make test certificates",
    )
    actions = ca.add_subparsers(dest="ca_command", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add", parents=[common], help="register a CA certificate (unverified) and print its verification code"
    )
    add.add_argument("name", metavar="NAME")
    add.add_argument("certificate", metavar="CERT.pem", type=Path)
    verify = actions.add_parser(
        "verify",
        parents=[common],
        help="verify a CA with a certificate whose CN is its verification code, signed by its key",
    )
    verify.add_argument("name", metavar="NAME")
    verify.add_argument("certificate", metavar="VERIFICATION-CERT.pem", type=Path)
    list_ = actions.add_parser("list", parents=[common], help="list the registered CAs")
    list_.add_argument("--json", action="store_true", help="a JSON array, for scripts")
    remove = actions.add_parser("remove", parents=[common], help="forget a CA (its devices stop connecting)")
    remove.add_argument("name", metavar="NAME")
    dev = actions.add_parser(
        "dev-cert",
        parents=[common],
        help="make a test certificate and key (ID.pem, ID-key.pem) and print its SHA-1 thumbprint",
        description="Make a certificate with CN=ID and its key: self-signed by default (for a "
        "'selfSigned' device: register the printed thumbprint), or signed with --ca and --ca-key "
        "(for a 'certificateAuthority' device, or a CA's verification certificate: ID is then the "
        "verification code). --is-ca makes a CA certificate to register with `ca add`.",
    )
    dev.add_argument("common_name", metavar="ID")
    dev.add_argument(
        "--ca",
        default=None,
        metavar="NAME|CERT.pem",
        help="sign with this CA: a registered CA's name or a PEM file (needs --ca-key)",
    )
    dev.add_argument(
        "--ca-key", type=Path, default=None, metavar="KEY.pem", help="the CA's private key (PEM)"
    )
    dev.add_argument("--is-ca", action="store_true", help="make a CA certificate (it may sign others)")
    dev.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    dev.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="PREFIX",
        help="write PREFIX.pem and PREFIX-key.pem (default: ID)",
    )


def manage_authorities(args: argparse.Namespace, data_dir: Path) -> None:
    """``ca add|verify|list|remove|dev-cert``."""
    if args.ca_command == "dev-cert" and (args.ca is None or os.path.isfile(args.ca)):
        _dev_cert(args, None)  # no registry needed
        return
    asyncio.run(_run(args, data_dir))


async def _run(args: argparse.Namespace, data_dir: Path) -> None:
    action = args.ca_command
    registry = await open_hub_registry(data_dir, args.registry_url)
    try:
        if action == "add":
            await _add(registry, args)
        elif action == "verify":
            await _verify(registry, args)
        elif action == "list":
            await _list(registry, args)
        elif action == "remove":
            await registry.remove_authority(args.name)
            print(
                f"CA '{args.name}' removed; devices it issued certificates for can no longer connect",
                file=sys.stderr,
            )
        elif action == "dev-cert":
            found = {a.name: a for a in await registry.list_authorities()}.get(args.ca)
            if found is None:
                fail(f"--ca {args.ca}: neither a registered CA nor a file", EXIT_USAGE)
            _dev_cert(args, found.certificate.encode())
    except HubError as exc:
        fail(exc.message)
    finally:
        await registry.close()


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"{what} {path}: {exc.strerror or exc}", EXIT_USAGE)


async def _add(registry: Registry, args: argparse.Namespace) -> None:
    from methodhub.auth.x509 import CertificateError, check_authority, der_of, load_certificate, thumbprints
    from methodhub.process.certificates import certificate_pem

    try:
        certificate = load_certificate(_read(args.certificate, "CERT.pem"), str(args.certificate))
        check_authority(certificate)
    except CertificateError as exc:
        fail(str(exc), EXIT_USAGE)
    _sha1, sha256 = thumbprints(der_of(certificate))
    added = await registry.add_authority(args.name, certificate_pem(certificate).decode(), sha256)
    print(added.verification_code)
    print(
        f"CA '{added.name}' registered, unverified. Prove you hold its key: sign a certificate whose CN "
        f"is the code above with it, e.g.\n  methodhub ca dev-cert {added.verification_code} --ca "
        f"{args.certificate} --ca-key CA-KEY.pem --out verification\n  methodhub ca verify {added.name} "
        "verification.pem",
        file=sys.stderr,
    )


async def _verify(registry: Registry, args: argparse.Namespace) -> None:
    from methodhub.auth.x509 import CertificateError, check_proof_of_possession, load_certificate

    found = {a.name: a for a in await registry.list_authorities()}.get(args.name)
    if found is None:
        fail(f"no CA '{args.name}' is registered (methodhub ca list)")
    try:
        verification = load_certificate(
            _read(args.certificate, "VERIFICATION-CERT.pem"), str(args.certificate)
        )
        check_proof_of_possession(
            load_certificate(found.certificate.encode()), verification, found.verification_code
        )
    except CertificateError as exc:
        fail(f"CA '{args.name}' not verified: {exc}")
    await registry.set_authority_verified(args.name)
    print(f"CA '{args.name}' verified: devices with certificates it issued may connect", file=sys.stderr)


async def _list(registry: Registry, args: argparse.Namespace) -> None:
    from methodhub.auth.x509 import common_name, load_certificate

    rows = []
    for authority in await registry.list_authorities():
        certificate = load_certificate(authority.certificate.encode())
        rows.append(
            {
                "name": authority.name,
                "subject": common_name(certificate),
                "thumbprint": authority.thumbprint,
                "verified": authority.verified,
                "verificationCode": None if authority.verified else authority.verification_code,
                "expiry": certificate.not_valid_after_utc.isoformat(),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'NAME':<20} {'VERIFIED':<9} {'EXPIRES':<26} SUBJECT CN")
    for row in rows:
        verified = "yes" if row["verified"] else "no"
        print(f"{row['name']:<20} {verified:<9} {row['expiry']:<26} {row['subject']}")


def _dev_cert(args: argparse.Namespace, registered_ca: bytes | None) -> None:
    from methodhub.auth.x509 import der_of, thumbprints
    from methodhub.process.certificates import Issuer, issue, load_issuer, write_pair

    if args.days < 1:
        fail("--days must be at least 1", EXIT_USAGE)
    issuer: Issuer | None = None
    if args.ca is not None:
        if args.ca_key is None:
            fail("--ca needs --ca-key KEY.pem (the CA's private key)", EXIT_USAGE)
        ca_pem = registered_ca if registered_ca is not None else _read(Path(args.ca), "--ca")
        try:
            issuer = load_issuer(ca_pem, _read(args.ca_key, "--ca-key"))
        except ValueError as exc:
            fail(f"--ca {args.ca} with --ca-key {args.ca_key}: {exc}", EXIT_USAGE)
    elif args.ca_key is not None:
        fail("--ca-key needs --ca (the CA's certificate or registered name)", EXIT_USAGE)
    certificate, key = issue(args.common_name, issuer, ca=args.is_ca, validity=dt.timedelta(days=args.days))
    prefix = args.out or Path(args.common_name.replace("/", "-"))
    cert_path, key_path = Path(f"{prefix}.pem"), Path(f"{prefix}-key.pem")
    try:
        write_pair(certificate, key, cert_path, key_path)
    except OSError as exc:
        fail(f"cannot write {cert_path}: {exc.strerror or exc}")
    sha1, sha256 = thumbprints(der_of(certificate))
    print(sha1)
    kind = "CA certificate" if args.is_ca else "certificate"
    signer = f"signed by {args.ca}" if issuer else "self-signed"
    print(
        f"{kind} CN={args.common_name}, {signer}, valid {args.days} days: {cert_path}, key {key_path}; "
        f"SHA-256 thumbprint {sha256}",
        file=sys.stderr,
    )
