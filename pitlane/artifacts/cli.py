"""`pitlane model push|pull|inspect|ls|sign|verify`, `pitlane keys generate` and `pitlane registry serve`.

References print as `REGISTRY/REPOSITORY@sha256:...`: a digest names exactly one model, a tag can move.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path

from pitlane import tracking
from pitlane.args import check_output_dir
from pitlane.artifacts import bundle, oci, release_signing, signing
from pitlane.artifacts.fetch import fetch_verified
from pitlane.artifacts.registry import Registry, RegistryConfig
from pitlane.artifacts.trust import check_release
from pitlane.errors import UserError
from pitlane.pilots.model import check_model_file


def _client(ref: oci.Reference) -> oci.Client:
    return oci.Client.for_ref(ref)


def _push(args: argparse.Namespace) -> int:
    ref = oci.Reference.parse(args.to)
    if ref.digest:
        raise UserError(f"--to {args.to}: push to a repository or a tag; the registry gives the digest")
    if args.model and args.model_arg:
        raise UserError(f"two models given ({args.model_arg} and --model {args.model}); give one")
    if not (args.model or args.model_arg):
        raise UserError("no model given: --model FILE (the .tflite model)")
    model = check_model_file(args.model or args.model_arg)
    gate = Path(args.gate) if args.gate else bundle.default_gate_report(model)
    client = _client(ref)
    client.ping()
    serial = args.serial if args.serial is not None else bundle.next_serial(client, ref)
    b = bundle.pack(model, gate_report=gate, serial=serial, keras=Path(args.keras) if args.keras else None)
    tags = (f"serial-{serial}",) + ((ref.tag,) if ref.tag else ())
    pushed = bundle.push(client, b, ref, tags)
    print(
        f"pushed {model} (serial {serial}, gate {'report ' + str(gate) if gate else 'none'}) as tags {', '.join(tags)}"
    )
    print(pushed)
    tracking.log_bundle(model, str(pushed))  # MLflow, when MLFLOW_TRACKING_URI is set
    return 0


def _pull(args: argparse.Namespace) -> int:
    ref = oci.Reference.parse(args.ref)
    check_output_dir(args.out)
    key = signing.load_public_key(Path(args.key)) if args.key else None
    got = fetch_verified(ref, key, None, _client(ref))
    for title, path in got.write(Path(args.out)).items():
        print(f"  {title}: {path}")
    print(got.ref)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    ref = oci.Reference.parse(args.ref)
    remote = bundle.fetch(_client(ref), ref)
    if args.json:
        print(
            json.dumps(
                {"reference": str(remote.ref), "manifest": remote.manifest, "config": remote.config}, indent=2
            )
        )
        return 0
    c = remote.config
    gate = c.get("gate") or {}
    print(f"reference     {remote.ref}")
    print(f"serial        {c['serial']}")
    print(
        f"model         {c.get('model_type')} input {c.get('input_shape')} runtimes {', '.join(c.get('runtimes', []))}"
    )
    print(
        f"gate          {gate.get('verdict', 'none')} ({gate.get('checks_passed', 0)}/{gate.get('checks', 0)} checks)"
    )
    print(f"training data {(c.get('training') or {}).get('data_digest') or 'unknown'}")
    print(
        f"git commit    {c.get('git_commit')}   created {c.get('created')}   pitlane {c.get('pitlane_version')}"
    )
    for d in remote.manifest["layers"]:
        print(f"  layer {d['annotations'][bundle.TITLE]:<13} {d['size']:>10} B  {d['digest']}")
    return 0


def _ls(args: argparse.Namespace) -> int:
    ref = oci.Reference.parse(args.repo)
    client = _client(ref)
    tags = set(client.tags(ref.repository))
    rows = bundle.list_bundles(client, ref)
    if not rows:
        print(f"no model bundles in {ref.name}")
        return 0
    print(f"{'tag':<20} {'serial':>6}  {'gate':<5} {'signed':<6} reference")
    for tag, remote in sorted(rows, key=lambda r: (r[1].serial, r[0])):
        assert remote.ref.digest is not None
        signed = "yes" if signing.suffix_tag(remote.ref.digest, "sig") in tags else "no"
        verdict = (remote.config.get("gate") or {}).get("verdict", "none")
        print(f"{tag:<20} {remote.serial:>6}  {verdict:<5} {signed:<6} {remote.ref}")
    return 0


def _sign(args: argparse.Namespace) -> int:
    ref = oci.Reference.parse(args.ref)
    key = signing.load_private_key(Path(args.key))
    report = Path(args.gate).read_bytes() if Path(args.gate).is_file() else None
    if report is None:
        raise UserError(
            f"gate report {args.gate} does not exist: gate the model (`pitlane gate --model M --out DIR`)"
        )
    client = _client(ref)
    ref = bundle.resolve(client, ref)
    serial = release_signing.signed_serial(client, ref, key.public_key())
    if serial is None:  # the signer assigns the serial, never the pusher: one more than this key ever signed
        serial = release_signing.highest_signed_serial(client, ref, key.public_key()) + 1
    done = release_signing.sign_release(client, ref, key, report, serial)
    print(
        f"signed {done.ref} (release serial {done.serial}): signature {done.signature}, gate attestation {done.attestation}"
    )
    print(done.ref)
    return 0


def _verify(args: argparse.Namespace) -> int:
    ref = oci.Reference.parse(args.ref)
    key = signing.load_public_key(Path(args.key))
    got = fetch_verified(ref, key, None, _client(ref))
    release = check_release(got)  # the signed serial, and a passing gate attestation for exactly this bundle
    print(
        f"verified {got.ref}: signature by {args.key}, release serial {release.serial}, "
        f"gate attestation verdict {release.gate.verdict}"
    )
    return 0


def _keys_generate(args: argparse.Namespace) -> int:
    key, pub = signing.generate_keys(Path(args.prefix))
    print(f"private key {key} (encrypted with ${signing.PASSWORD_ENV}), public key {pub}")
    return 0


def _registry_serve(args: argparse.Namespace) -> int:
    def stop(_sig, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # `kill` stops the registry too, not only Ctrl-C
    reg = Registry(RegistryConfig(storage=args.storage, host=args.host, port=args.port)).start()
    print(
        f"registry: {reg.url} (storage {args.storage}); push to {reg.host}/REPO; Ctrl-C stops it", flush=True
    )
    try:
        while reg.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        reg.stop()
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser(
        "model",
        help="model bundles in an OCI registry: push, pull, inspect, ls, sign, verify",
        description="A model bundle is an OCI manifest (artifactType application/vnd.pitlane.model.v1) holding "
        "the .tflite model, the .keras model when there is one, the gate report and canary frames, with "
        "metadata in its config. References print as REGISTRY/REPOSITORY@sha256:...",
    )
    ms = m.add_subparsers(dest="model_command", metavar="COMMAND", required=True)
    p = ms.add_parser("push", help="pack a trained .tflite model (and its gate report) and push it")
    p.add_argument(
        "--model",
        metavar="FILE",
        help="the .tflite model (its run record and .keras beside it are picked up)",
    )
    p.add_argument("model_arg", nargs="?", metavar="MODEL", help="the .tflite model given without --model")
    p.add_argument("--to", required=True, help="REGISTRY/REPOSITORY[:TAG], e.g. 127.0.0.1:5000/models/pilot")
    p.add_argument("--gate", help="gate report (default: ../gate/gate.json of the recipe layout, if present)")
    p.add_argument("--keras", help="the .keras model to ship too (default: the one the run record names)")
    p.add_argument(
        "--serial", type=int, help="release serial (default: one more than the repository's highest)"
    )
    p.set_defaults(func=_push)
    p = ms.add_parser("pull", help="pull a bundle's files into a folder (every digest checked)")
    p.add_argument("ref", help="REGISTRY/REPOSITORY@sha256:... (or :TAG)")
    p.add_argument("--out", default="model-bundle", help="folder to write (default ./model-bundle)")
    p.add_argument(
        "--key", help="public key (PEM): also require the bundle's signature (default: digests only)"
    )
    p.set_defaults(func=_pull)
    p = ms.add_parser("inspect", help="a bundle's metadata and layers")
    p.add_argument("ref", help="REGISTRY/REPOSITORY@sha256:... (or :TAG)")
    p.add_argument("--json", action="store_true", help="print manifest and config as JSON")
    p.set_defaults(func=_inspect)
    p = ms.add_parser("ls", help="the bundles of a repository, by serial")
    p.add_argument("repo", help="REGISTRY/REPOSITORY")
    p.set_defaults(func=_ls)
    p = ms.add_parser(
        "sign",
        help="sign a bundle (cosign format) as the next release serial and attest YOUR gate run's report",
        description="Attests only the gate report given with --gate (your own `pitlane gate` run of this "
        "model), never the gate.json the bundle was pushed with; refuses a report that did not pass or is for "
        "another .tflite. The serial is the signer's: one more than the highest this key signed in the "
        "repository (a bundle whose config says another is pushed again with it). The private key's "
        f"passphrase comes from ${signing.PASSWORD_ENV}.",
    )
    p.add_argument("ref", help="REGISTRY/REPOSITORY@sha256:... (or :TAG)")
    p.add_argument("--key", required=True, help="private key (PEM, from `pitlane keys generate`)")
    p.add_argument("--gate", required=True, metavar="GATE.JSON", help="the gate report of your gate run")
    p.set_defaults(func=_sign)
    p = ms.add_parser(
        "verify", help="check a bundle's signature, gate attestation and every digest with a public key"
    )
    p.add_argument("ref", help="REGISTRY/REPOSITORY@sha256:... (or :TAG)")
    p.add_argument("--key", required=True, help="public key (PEM)")
    p.set_defaults(func=_verify)
    _add_keys_and_registry(sub)


def _add_keys_and_registry(sub: argparse._SubParsersAction) -> None:
    k = sub.add_parser("keys", help="signing keys (ECDSA P-256, cosign-compatible)")
    ks = k.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    p = ks.add_parser(
        "generate",
        help="write PREFIX.key (encrypted) and PREFIX.pub",
        description=f"The passphrase is read from ${signing.PASSWORD_ENV} (never a flag). Existing files are "
        "never overwritten.",
    )
    p.add_argument("--prefix", default="pitlane", help="file name prefix (default ./pitlane)")
    p.set_defaults(func=_keys_generate)

    p = sub.add_parser(
        "registry",
        help="a local OCI registry (Debian's docker-registry) for models and images",
        description="Run a local OCI registry: Debian's docker-registry 2.8 on 127.0.0.1 with its own config "
        "and storage folder. No TLS and no auth: for a laptop, the tests and the demo, never the internet.",
    )
    rsub = p.add_subparsers(dest="registry_command", metavar="COMMAND", required=True)
    s = rsub.add_parser("serve", help="run the registry in the foreground until Ctrl-C")
    s.add_argument(
        "--storage", type=Path, default=Path("out/registry"), help="storage folder (default out/registry)"
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=5000, help="port (default 5000; 0 = any free port)")
    s.set_defaults(func=_registry_serve)
