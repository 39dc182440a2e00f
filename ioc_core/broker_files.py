"""Mosquitto's password and ACL files, written whole and swapped in, and the signal that makes a
running broker reread them (no restart, no dropped sessions)."""

import base64
import hashlib
import os
import re
import secrets
import signal
import tempfile
from pathlib import Path

from ioc_core import topics
from ioc_core.settings import REPO_ROOT

BASE_ACL = REPO_ROOT / "ops" / "mosquitto" / "acl"
# Mosquitto 2.0's "$7$" hash. Its default of 101 PBKDF2 rounds is enough for the random
# 256-bit passwords handed out here, and keeps each connection's check cheap.
_ROUNDS = 101


def service_usernames() -> list[str]:
    """The service accounts the ACL grants rights to (its ``user`` lines)."""
    return re.findall(r"^user (\S+)$", BASE_ACL.read_text(), flags=re.MULTILINE)


def new_password() -> str:
    """URL-safe, so that it can stand in an ``mqtt://user:password@host`` URL as it is."""
    return secrets.token_urlsafe(32)


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ROUNDS)
    return f"$7${_ROUNDS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password_hash: str, password: str) -> bool:
    try:
        _, kind, rounds, salt, _digest = password_hash.split("$")
        if kind != "7" or int(rounds) != _ROUNDS:
            return False
        return secrets.compare_digest(hash_password(password, base64.b64decode(salt)), password_hash)
    except ValueError:
        return False


def acl_text(gateways: list[str]) -> str:
    """The base ACL, and for each gateway its own readings topic (a gateway names the sensors it
    speaks for in the payload, so only accounts made as gateways may use that topic)."""
    blocks = [f"\nuser {g}\ntopic write {topics.gateway_readings(g)}\n" for g in sorted(gateways)]
    return BASE_ACL.read_text() + "".join(blocks)


def _replace(path: Path, text: str) -> None:
    """Write beside, then rename: the broker never reads a half-written file. The new file gets
    the owner of its directory (the broker's user when it was started as root)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 600
    tmp = Path(name)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    owner = path.parent.stat()
    if os.geteuid() == 0:
        os.chown(tmp, owner.st_uid, owner.st_gid)
    tmp.replace(path)


def write_broker_files(broker_dir: Path, accounts: dict[str, str], gateways: list[str]) -> None:
    """``accounts``: username to hash, every account the broker should accept, and no other."""
    broker_dir.mkdir(parents=True, exist_ok=True)
    _replace(broker_dir / "passwd", "".join(f"{user}:{h}\n" for user, h in sorted(accounts.items())))
    _replace(broker_dir / "acl", acl_text(gateways))


def reload_broker(broker_dir: Path) -> bool:
    """SIGHUP to the broker running from ``broker_dir``: it rereads both files and disconnects
    clients whose account is gone. False when no broker runs there (it reads them when it starts)."""
    try:
        pid = int((broker_dir / "mosquitto.pid").read_text())
        # A broker killed outright leaves its pid file behind, and the number may be reused.
        if Path(f"/proc/{pid}/comm").read_text().strip() != "mosquitto":
            return False
        os.kill(pid, signal.SIGHUP)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return False
    return True
