"""Command-line tools for monitor signals: the bedside gateway, device tokens, and importing recordings."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from pathlib import Path
from typing import Any

from teleconsult.settings import Settings


class SignalsCliError(Exception):
    pass


def cmd_device_play(args: argparse.Namespace, settings: Settings) -> int:
    from teleconsult.gateway import GatewayError, PlayOptions, play

    if args.speed < 0:
        raise SignalsCliError("--speed must be 0 (as fast as the link allows) or more")
    if not 40 <= args.frame_ms <= 1000:
        raise SignalsCliError("--frame-ms must be between 40 and 1000")
    options = PlayOptions(
        record=args.record,
        server=args.server,
        consultation_id=args.consultation,
        token=args.token,
        speed=args.speed,
        leads=[lead.strip() for lead in args.leads.split(",") if lead.strip()] if args.leads else None,
        frame_ms=args.frame_ms,
        outbox=Path(args.outbox) if args.outbox else None,
        vitals_every_s=args.vitals_every,
        simulate_vitals=args.simulate_vitals,
    )
    try:
        return play(options)
    except GatewayError as exc:
        raise SignalsCliError(str(exc)) from None


def cmd_device_token(args: argparse.Namespace, settings: Settings) -> int:
    from teleconsult.cli import with_services

    ttl = int(args.days * 24 * 3600) if args.days else settings.device_token_ttl_s
    if not 60 <= ttl <= 365 * 24 * 3600:
        raise SignalsCliError("--days must be between 1 minute and 365 days")

    async def work(services: Any) -> Any:
        return await services.auth.issue_device_token(args.username, ttl, source="cli")

    issued = asyncio.run(with_services(settings, work))
    print(issued.token)
    return 0


def cmd_ecg_import(args: argparse.Namespace, settings: Settings) -> int:
    from teleconsult.cli import with_services
    from teleconsult.gateway import GatewayError, load_record
    from teleconsult.storage.waveforms import StoredSignal

    try:
        recording = load_record(args.record, [x.strip() for x in args.leads.split(",")] if args.leads else None)
    except GatewayError as exc:
        raise SignalsCliError(str(exc)) from None
    signals = [StoredSignal(**s) for s in recording.signals]
    # The same recording imported twice for the same patient is recognised by its content.
    digest = hashlib.sha256(recording.samples.tobytes()).hexdigest()[:24]
    source_key = f"import-{digest}"

    async def work(services: Any) -> Any:
        patient_id = await services.fhir.patient_id_by_cccd(args.patient)
        return await services.waveforms.import_samples(
            patient_id,
            source_key,
            args.label or recording.name,
            recording.sample_rate,
            signals,
            recording.samples,
            source="cli",
        )

    stream = asyncio.run(with_services(settings, work))
    seconds = stream.next_sample / stream.sample_rate
    print(f"stored stream {stream.id}: {len(signals)} signals, {stream.next_sample} samples each ({seconds:.1f} s)")
    return 0


def add_signal_commands(sub: Any) -> None:
    device = sub.add_parser("device", help="bedside gateway").add_subparsers(dest="action", required=True)
    play = device.add_parser("play", help="stream a WFDB record to a consultation as a live monitor would")
    play.add_argument("record", help="WFDB record path, without extension (e.g. data/100)")
    play.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8080")
    play.add_argument("--consultation", required=True, type=int, help="consultation id")
    play.add_argument("--token", required=True, help="device or API token of a clinician of the requesting facility")
    play.add_argument("--speed", type=float, default=1.0, help="1 = real time, 10 = ten times faster, 0 = unpaced")
    play.add_argument("--leads", help="comma-separated signal names to send (default: all)")
    play.add_argument("--frame-ms", type=int, default=200, help="frame length in milliseconds (40-1000)")
    play.add_argument("--outbox", help="outbox file (default: var/outbox/<record>-c<consultation>.sqlite3)")
    play.add_argument("--vitals-every", type=float, default=5.0, help="seconds between numeric vitals (0: none)")
    play.add_argument(
        "--simulate-vitals",
        action="store_true",
        help="when the record has no numeric channels, send simulated SpO2/BP/RR/temperature and HR from the ECG",
    )
    play.set_defaults(func=cmd_device_play)
    token = device.add_parser("token", help="print a new device token for a clinician's gateway")
    token.add_argument("username")
    token.add_argument("--days", type=float, help="lifetime (default: TELECONSULT_DEVICE_TOKEN_TTL_S)")
    token.set_defaults(func=cmd_device_token)
    ecg = sub.add_parser("ecg", help="stored ECG and monitor signals").add_subparsers(dest="action", required=True)
    imp = ecg.add_parser("import", help="store a WFDB record in a patient's record")
    imp.add_argument("record", help="WFDB record path, without extension")
    imp.add_argument("--patient", required=True, metavar="CCCD")
    imp.add_argument("--leads", help="comma-separated signal names (default: all)")
    imp.add_argument("--label", help="label shown in the record (default: the record name)")
    imp.set_defaults(func=cmd_ecg_import)
