"""Reading and writing the files stages exchange, always atomically: a file or
folder appears under its final name only once it is complete, so a crash never
leaves something that looks finished."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image
from maskgit.project.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# a temporary sibling is .<name>.<pid>.<8 random characters>, a file ending .tmp: the pid
# of the process building it, so that remove_stale_tmp never touches one still in use
_TMP_NAME = re.compile(r"\..+\.(\d+)\.[a-z0-9_]{8}(\.tmp)?")


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _tmp_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file private (0600); give it the permissions open() would
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)


@contextmanager
def atomic_file(path: str | Path):
    """Open a temporary sibling of `path` for binary writing; it replaces `path`
    when the block ends and is deleted when the block raises. `f.name` is the
    temporary file, for checks that must read it back before it is published."""
    path = Path(path)
    tmp = _tmp_beside(path)
    try:
        with _naming(path), open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # on disk before it takes the name: a power cut leaves old or new, never empty
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _naming(path: Path):
    """A full disk fails a write() with no file name: name the file being written."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            e.filename = str(path)
        raise


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def read_json(path: str | Path):
    """A JSON file a stage wrote; InputError naming it when it is not there."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: not found (run the stage that writes it first)")
    return json.loads(path.read_text())


def write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def save_torch(path: str | Path, obj) -> None:
    # Serialised in memory, then written by Python: torch's zip writer turns a
    # failed write (a full disk) into a RuntimeError that names neither the file
    # nor the cause, where Python's write raises OSError(ENOSPC) with both. A file
    # object, not a path: given a path, torch names the records inside the zip
    # after the (random) temporary file, and equal models get unequal bytes.
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


def save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_file(path) as f:
        np.save(f, array)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no images in folder")
    return files


def read_images(folder: str | Path, size: int | None = None, limit: int | None = None) -> np.ndarray:
    """The images of a folder (all, or the first `limit`), sorted by name, as uint8 (N, H, W, 3)."""
    return read_image_files(list_images(folder)[:limit], size)


def read_image_files(paths: list[Path], size: int | None = None) -> np.ndarray:
    """The given image files as uint8 (N, H, W, 3): a batch of a folder read by `list_images`."""
    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.load()
                arr = np.asarray(im.convert("RGB"))
        except OSError as e:
            raise InputError(f"{p}: unreadable image ({e})") from None
        if size is not None and arr.shape[:2] != (size, size):
            raise InputError(f"{p}: image is {arr.shape[1]}x{arr.shape[0]}, expected {size}x{size} (data.image_size)")
        out.append(arr)
    return np.stack(out)


def read_masks(folder: str | Path, size: int | None = None) -> np.ndarray:
    """Masks as bool (N, H, W), True = known (white). Gray levels >= 128 count as white."""
    return read_mask_files(list_images(folder), size)


def read_mask_files(paths: list[Path], size: int | None = None) -> np.ndarray:
    """The given mask files as bool (N, H, W), with the threshold of `read_masks`."""
    out = []
    for p in paths:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("L"))
        if size is not None and arr.shape != (size, size):
            raise InputError(f"{p}: mask is {arr.shape[1]}x{arr.shape[0]}, expected {size}x{size} (data.image_size)")
        out.append(arr >= 128)
    return np.stack(out)


def write_images(folder: str | Path, images: np.ndarray, names: list[str] | None = None) -> None:
    """Write uint8 (N, H, W, 3) or bool masks (N, H, W) as PNGs into `folder`,
    replacing it whole: written to a temporary sibling, then renamed."""
    with image_folder(folder) as write:
        write(images, names or [f"{i:05d}.png" for i in range(len(images))])


@contextmanager
def image_folder(folder: str | Path):
    """Build the image folder `folder` a batch at a time: yields `write(images, names)`,
    which saves uint8 (n, H, W, 3) or bool (n, H, W) arrays as PNGs under those names
    in a temporary sibling. The sibling replaces `folder` when the block ends and is
    removed when it raises, so a set of any size streams through a batch's memory and
    a crash leaves the previous folder (or none), never a partial one."""
    folder = Path(folder)
    tmp = make_tmp_dir(folder)

    def write(images: np.ndarray, names: list[str]) -> None:
        if len(images) != len(names):
            raise InputError(f"{folder}: {len(images)} images but {len(names)} names")
        for img, name in zip(images, names):
            if img.dtype == bool:
                img = img.astype(np.uint8) * 255
            Image.fromarray(img).save(tmp / name)

    try:
        yield write
        replace_dir(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def make_tmp_dir(folder: Path) -> Path:
    """A temporary sibling of `folder` to build it in (mkdtemp's 0700 widened)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    # what a run killed outright (SIGKILL, power cut) left: DVC runs one stage per
    # workspace at a time, so no other run is building one now
    for stale in folder.parent.glob(f".{folder.name}.*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(folder), dir=folder.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def remove_stale_tmp(roots) -> list[Path]:
    """Remove the temporary siblings (of atomic_file, make_tmp_dir) under the folders `roots`
    whose process is gone, and return them. A run killed outright (SIGKILL, power cut) leaves
    its own; when DVC then restores that stage from its run cache, the stage never runs again
    to clear them, so every stage clears every dead process's when it starts."""
    removed, todo = [], [Path(r) for r in roots]
    while todo:
        try:
            entries = list(os.scandir(todo.pop()))
        except OSError:  # absent, or not a folder
            continue
        for e in entries:
            match = _TMP_NAME.fullmatch(e.name)
            if match and not psutil.pid_exists(int(match[1])):
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path, ignore_errors=True)
                else:
                    Path(e.path).unlink(missing_ok=True)
                removed.append(Path(e.path))
            elif e.is_dir(follow_symlinks=False):
                todo.append(Path(e.path))
    return removed


def replace_dir(tmp: Path, folder: Path) -> None:
    """Move a finished temporary folder into place."""
    _fsync_tree(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    _fsync_dir(folder.parent)


def to_tensor(images: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) normalised (x - mean) / std, x in [0, 1]."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def to_uint8(x: torch.Tensor, mean, std) -> np.ndarray:
    """The inverse of to_tensor, clamped to [0, 1] as the lab does."""
    x = x.float().cpu() * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
