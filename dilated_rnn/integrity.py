"""Checksums of everything the project writes and later reads: a file that changed is refused before use.

Three forms, one hash (SHA-256 of the file's bytes):

* a **seal**, a fixed-size footer appended to a file the project alone reads back
  (checkpoints): ``payload + b"\\n#drnn-sha256:" + hex digest + b"\\n"``;
* a **sidecar** ``FILE.sha256`` beside a file other tools read as it is (exported
  ONNX graphs and OpenVINO IR, which runtimes and converters load directly), in
  ``sha256sum``'s format: one line for the file, then one per file it needs (an
  IR's ``.xml`` lists its ``.bin`` of weights);
* a **manifest** ``SHA256SUMS`` in a folder of files shipped together (the
  pretrained weights and their cards), in ``sha256sum``'s format and sealed
  itself, so a change to any line of it is caught whichever file is loaded.

Any change to the bytes (a flipped bit anywhere, a truncation, a swapped
tensor) changes the hash, and the load ends in one ``UserError`` naming the file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import UserError
from .files import write_bytes

MAGIC = b"\n#drnn-sha256:"
SEAL_SIZE = len(MAGIC) + 64 + 1
MANIFEST = "SHA256SUMS"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seal(payload: bytes) -> bytes:
    """``payload`` with its checksum footer."""
    return payload + MAGIC + sha256(payload).encode() + b"\n"


def unseal(data: bytes, path) -> bytes | None:
    """The payload of a sealed file, verified; None if ``data`` carries no seal (a file written before seals)."""
    footer = data[-SEAL_SIZE:]
    if len(data) < SEAL_SIZE or not footer.startswith(MAGIC):
        return None
    payload, digest = data[:-SEAL_SIZE], footer[len(MAGIC) : -1].decode("ascii", "replace")
    if footer[-1:] != b"\n" or sha256(payload) != digest:
        raise UserError(f"{path}: checksum mismatch; the file was changed or damaged after it was written")
    return payload


def sidecar(path) -> Path:
    return Path(str(path) + ".sha256")


def write_sidecar(path, companions=()) -> None:
    """Write ``PATH.sha256`` (atomically) for the file at ``path`` and the ``companions`` beside it."""
    path = Path(path)
    files = [path, *map(Path, companions)]
    write_bytes(sidecar(path), "".join(f"{sha256(p.read_bytes())}  {p.name}\n" for p in files).encode())


def verify_sidecar(path) -> bool:
    """Check ``path`` and every file its ``PATH.sha256`` lists; False if there is no sidecar, an error if any
    listed file differs or is missing."""
    path = Path(path)
    side = sidecar(path)
    if not side.is_file():
        return False
    lines = [line.partition("  ") for line in side.read_text(errors="replace").splitlines() if line.strip()]
    names = [name for _, _, name in lines]
    if not names or names[0] != path.name or any(Path(n).name != n for n in names):
        raise UserError(f"{side}: damaged; its first line must name {path.name}")
    for digest, _, name in lines:
        target = path.parent / name
        if not target.is_file():
            raise UserError(f"{target}: missing; {side.name} lists it as part of {path.name}")
        if digest != sha256(target.read_bytes()):
            raise UserError(f"{target}: checksum mismatch with {side.name}; the file was changed or damaged after export")
    return True


def write_manifest(directory) -> None:
    """``SHA256SUMS`` over every file in ``directory`` (itself excepted), sorted by name."""
    directory = Path(directory)
    lines = [f"{sha256(p.read_bytes())}  {p.name}\n" for p in sorted(directory.iterdir())
             if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")]
    write_bytes(directory / MANIFEST, seal("".join(lines).encode()))


def verify_in_manifest(path) -> bytes:
    """The bytes of ``path``, checked against its folder's ``SHA256SUMS``."""
    path = Path(path)
    manifest = path.parent / MANIFEST
    if not manifest.is_file():
        raise UserError(f"{path}: {manifest} is missing; the shipped files cannot be verified")
    text = unseal(manifest.read_bytes(), manifest)
    if text is None:
        raise UserError(f"{manifest}: its checksum seal is missing or damaged")
    listed = {}
    for line in text.decode(errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    data = path.read_bytes()
    if path.name not in listed:
        raise UserError(f"{path}: not listed in {manifest}")
    if listed[path.name] != sha256(data):
        raise UserError(f"{path}: checksum mismatch with {manifest}; the file was changed or damaged")
    return data
