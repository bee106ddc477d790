"""Owner and scientist on one machine: the loopback file, and the token that proves it was read.

``launch_duet(loopback=True)`` writes a small JSON file that only its user can read (mode 0600):
the session ID, the signaling URL, the owner's pid, the owner's ID and a random 256-bit token.
``join_duet(loopback=True)`` reads it, refusing a file that another user could have planted or
read (not a regular file of its own, or readable by group or others). The scientist then

- adds to its offer a proof that it read the file: an HMAC, under the token, of the session ID
  and its own DTLS fingerprint (one ``a=x-duet-loopback-proof`` line);
- checks the certificate the owner presents against the owner's ID from the file.

The owner refuses an offer without a valid proof, in place of the client ID a person confirms
across machines. The proof travels through the signaling server, but it is bound to the
scientist's certificate, which the owner checks after DTLS, so it is of no use to anyone else.
The session ID alone (printed, and known to the signaling server) does not let anyone join.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import HandshakeError, UsageError
from ..transport.sdp import sdp_lines

LOOPBACK_FILE_ENV = "DUET_LOOPBACK_FILE"
_PROOF_ATTRIBUTE = "a=x-duet-loopback-proof:"
_PROOF_CONTEXT = b"duet loopback proof v1\x00"
_MAX_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class LoopbackRecord:
    """What the owner leaves for a scientist on this machine."""

    session_id: str
    signaling_url: str
    pid: int
    owner_id: str
    token: str


def loopback_file() -> Path:
    """Where an owner started with ``loopback=True`` leaves its address for a local scientist."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(
        os.environ.get(LOOPBACK_FILE_ENV)
        or Path(tempfile.gettempdir()) / f"duet-loopback-{uid}.json"
    )


def new_token() -> str:
    """A fresh random token (256 bits, hex)."""
    return secrets.token_hex(32)


def write_loopback(record: LoopbackRecord) -> Path:
    """Write ``record`` to the loopback file, readable by this user only; return its path.

    Written whole to a new private file, then renamed into place: a scientist never reads half
    a file, and no one else ever gets to open it. Raises UsageError if the place is not ours.
    """
    path = loopback_file()
    try:
        fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(
            f"cannot write the loopback file in {path.parent} ({exc}); set "
            f"{LOOPBACK_FILE_ENV} to a path in a directory of your own"
        ) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:  # mkstemp: mode 0600, O_EXCL
            json.dump(asdict(record), out)
        os.replace(partial, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise UsageError(
            f"cannot write the loopback file {path} ({exc}); if it belongs to another user, "
            f"remove it or set {LOOPBACK_FILE_ENV} to a path of your own"
        ) from exc
    return path


def _open_own(path: Path) -> tuple[os.stat_result, bytes]:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise UsageError(
            "no owner is waiting on this machine: run launch_duet(loopback=True) first"
        ) from None
    except OSError as exc:
        raise UsageError(
            f"cannot open the loopback file {path} ({exc}); a symbolic link is refused. "
            "Remove it and relaunch the owner"
        ) from exc
    try:
        info = os.fstat(fd)
        data = os.read(fd, _MAX_FILE_BYTES + 1) if stat.S_ISREG(info.st_mode) else b""
    finally:
        os.close(fd)
    return info, data


def _ours(info: os.stat_result) -> bool:
    """A regular file of this user's (so this user may remove it)."""
    mine = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return stat.S_ISREG(info.st_mode) and mine


def _not_private(info: os.stat_result) -> str | None:
    """Why the file could have been written or read by someone else, or None."""
    if not stat.S_ISREG(info.st_mode):
        return "it is not a regular file"
    if not _ours(info):
        return f"it belongs to user {info.st_uid}, not to you"
    if hasattr(os, "getuid") and info.st_mode & 0o077:
        return f"its mode is {stat.S_IMODE(info.st_mode):04o}, not 0600"
    return None


def read_loopback() -> LoopbackRecord:
    """The waiting owner's record; UsageError if there is none, or it is stale or not private."""
    path = loopback_file()
    info, data = _open_own(path)
    try:
        if len(data) > _MAX_FILE_BYTES:
            raise ValueError(f"larger than {_MAX_FILE_BYTES} bytes")
        fields = json.loads(data.decode("utf-8"))
        if not isinstance(fields, dict):
            raise TypeError("not a JSON object")
        pid = int(fields["pid"])
        session_id, url = str(fields["session_id"]), str(fields["signaling_url"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"the loopback file {path} is unreadable ({exc!r}); relaunch the owner"
        ) from exc
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        if _ours(info):  # never remove someone else's file
            path.unlink(missing_ok=True)
        raise UsageError(
            "no owner is waiting on this machine (the last one has exited): "
            "run launch_duet(loopback=True)"
        ) from None
    except PermissionError:
        pass  # alive, another user's process: the ownership check below refuses it
    problem = _not_private(info)
    if problem is not None:
        raise UsageError(
            f"refusing the loopback file {path}: {problem}, so someone else may have written or "
            "read it. Remove it and relaunch the owner (it writes the file 0600)"
        )
    owner_id, token = fields.get("owner_id"), fields.get("token")
    if not isinstance(owner_id, str) or not isinstance(token, str) or len(token) != 64:
        raise UsageError(
            f"the loopback file {path} has no owner ID or token (written by an older duet?); "
            "relaunch the owner"
        )
    return LoopbackRecord(session_id, url, pid, owner_id, token)


def remove_loopback(session_id: str) -> None:
    """Remove the loopback file if it is still this session's."""
    path = loopback_file()
    try:
        info, data = _open_own(path)
        if _ours(info) and json.loads(data).get("session_id") == session_id:
            path.unlink(missing_ok=True)
    except (UsageError, OSError, ValueError, AttributeError):
        pass  # gone already, or another owner's by now


def loopback_proof(token: str, session_id: str, fingerprint: str) -> str:
    """The proof that whoever holds ``fingerprint``'s certificate read the token (hex)."""
    message = _PROOF_CONTEXT + f"{session_id}\x00{fingerprint.upper()}".encode()
    return hmac.new(bytes.fromhex(token), message, hashlib.sha256).hexdigest()


def with_proof(sdp: str, proof: str) -> str:
    """``sdp`` with the proof added as a session-level attribute (WebRTC implementations
    ignore attributes they do not know)."""
    head, sep, media = sdp.partition("\r\nm=")
    return f"{head}\r\n{_PROOF_ATTRIBUTE}{proof}{sep}{media}" if sep else sdp


def check_proof(sdp: str, token: str, session_id: str, fingerprint: str) -> None:
    """Raise HandshakeError unless ``sdp`` carries the proof for ``fingerprint`` under ``token``."""
    found = [
        line[len(_PROOF_ATTRIBUTE) :]
        for line in sdp_lines(sdp, "the scientist's offer")
        if line.startswith(_PROOF_ATTRIBUTE)
    ]
    expected = loopback_proof(token, session_id, fingerprint)
    if len(found) != 1 or not hmac.compare_digest(found[0].encode(), expected.encode()):
        raise HandshakeError(
            "a process joined this loopback session without proving it read the loopback file "
            f"{loopback_file()} (only your user can read it); refusing it. If that was you, "
            "join with join_duet(loopback=True) as the same user; otherwise someone on this "
            "machine tried to take the scientist's place: relaunch the owner"
        )
