"""Reading raw text corpora: strict UTF-8 (UTF-16 or UTF-32 after their byte-order mark) streamed in chunks,
and records cut from it in blocks.

A *record* is the unit that ``<eos>`` closes and that splits are made of: a line
(names, Penn Treebank sentences, verse) or a paragraph (prose: the lines between
blank lines, joined with a space).  Blank records are dropped, except with ``verbatim_line``: every line,
blank ones too, so that the token stream is the text itself with ``<eos>`` for each newline (how char-rnn
and nanoGPT read tinyshakespeare).  Files are decoded with an incremental decoder, newlines normalised, and
cut into blocks of records of about :data:`BLOCK_BYTES`; ``record: regex`` reads each file whole (a match may
span any number of lines, which no chunked scan can follow exactly).  :mod:`pipeline.data.text` splits them.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pipeline.errors import UserError

#: Bytes read from a file at a time when streaming; blocks of records hold about this much text.  Every copy
#: of a block (decoded text, up to 4 bytes a character; records; UTF-32 code points and their int64 indices;
#: tokens) is transient, but the C heap keeps what fragmentation leaves: larger blocks raise the peak RSS by
#: ~40 MB per MiB and gain no speed.
BLOCK_BYTES = 1 << 18


class TextCorpusError(UserError):
    """A text corpus that cannot be read or split; the message names the file."""


#: Byte-order marks and the codec each announces (UTF-32 before UTF-16: ``FF FE 00 00`` starts with ``FF FE``).
_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32-LE", codecs.utf_32_le_decode),
         (codecs.BOM_UTF32_BE, "UTF-32-BE", codecs.utf_32_be_decode),
         (codecs.BOM_UTF8, "UTF-8", codecs.utf_8_decode),
         (codecs.BOM_UTF16_LE, "UTF-16-LE", codecs.utf_16_le_decode),
         (codecs.BOM_UTF16_BE, "UTF-16-BE", codecs.utf_16_be_decode))


def _encoding(head: bytes) -> tuple[int, str, Callable[[bytes, str, bool], tuple[str, int]]]:
    """``(BOM length, codec name, decode)`` for a file starting with ``head``: its byte-order mark's, else UTF-8."""
    for bom, name, decode in _BOMS:
        if head.startswith(bom):
            return len(bom), name, decode
    return 0, "UTF-8", codecs.utf_8_decode


def read_text(path: Path) -> str:
    """Decode ``path`` as UTF-8, or as UTF-16/UTF-32 when a byte-order mark says so (BOM dropped, newlines
    normalised), naming the byte offset of bad input."""
    data = Path(path).read_bytes()
    start, name, decode = _encoding(data[:4])
    try:
        text, _ = decode(data[start:], "strict", True)
    except UnicodeDecodeError as e:
        raise _decode_error(path, start + e.start, data[start + e.start], data, name) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode_error(path: Path, offset: int, byte: int, head: bytes, encoding: str = "UTF-8") -> TextCorpusError:
    """The error for ``byte`` at file ``offset``, not ``encoding``; for a file without a byte-order mark, its
    first 8 KiB (``head``) tell binary files."""
    if encoding == "UTF-8" and looks_binary(head):
        return TextCorpusError(
            f"{path}: a binary file, not text (byte 0x{byte:02x} at offset {offset} is not UTF-8); "
            f"point the corpus at a text file"
        )
    return TextCorpusError(
        f"{path}: not valid {encoding} at byte offset {offset} (byte 0x{byte:02x}); "
        f"convert the file to UTF-8 (e.g. iconv -f {'latin1' if encoding == 'UTF-8' else encoding[:6]} -t utf-8)"
    )


def looks_binary(data: bytes, sample: int = 8192) -> bool:
    """True for bytes that are no text in any 8-bit encoding: a NUL byte, or more than 10% control bytes
    other than tab, newline, carriage return and form feed, in the first ``sample`` bytes."""
    head = data[:sample]
    if b"\0" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13) or b == 127)
    return controls > 0.1 * max(len(head), 1)


def iter_text(path: Path, block_bytes: int = BLOCK_BYTES) -> Iterator[str]:
    """The text :func:`read_text` returns, in pieces decoded from ``block_bytes`` reads, with the same errors.

    A character cut between two reads waits for its last bytes (the decoder returns what it consumed);
    a ``\\r`` ending a piece waits for the next one, which may start with the ``\\n`` of a ``\\r\\n``.
    """
    with open(path, "rb") as f:
        head = f.read(4)
        offset, name, decode = _encoding(head)  # offset: the file offset of pending[0]
        pending = head[offset:]
        carry = ""
        while True:
            chunk = f.read(block_bytes)
            data = pending + chunk
            try:
                text, used = decode(data, "strict", not chunk)
            except UnicodeDecodeError as e:
                f.seek(0)
                raise _decode_error(path, offset + e.start, data[e.start], f.read(8192), name) from None
            pending, offset = data[used:], offset + used
            text = carry + text
            carry = "\r" if chunk and text.endswith("\r") else ""
            text = text[:-1] if carry else text
            if "\r" in text:
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            if text:
                yield text
            if not chunk:
                return


def to_records(text: str, record: str, pattern: str | None = None) -> list[str]:
    """Cut text into records: ``line``, ``paragraph``, ``regex`` (first group of each match), or ``verbatim_line``."""
    if record == "regex":
        return [" ".join(m.group(1).split()) for m in re.finditer(pattern, text, re.MULTILINE) if m.group(1).strip()]
    if record == "line":
        return [line for line in text.split("\n") if line.strip()]
    if record == "verbatim_line":
        lines = text.split("\n")
        return lines[:-1] if lines and lines[-1] == "" else lines  # a final newline closes the last line
    if record == "paragraph":
        paragraphs = []
        for block in text.split("\n\n"):
            joined = " ".join(line.strip() for line in block.split("\n") if line.strip())
            if joined:
                paragraphs.append(joined)
        return paragraphs
    raise ValueError(f"unknown record kind {record!r}")  # config validation makes this unreachable


def _file_records(path: Path, record: str, pattern: str | None, block_bytes: int) -> Iterator[list[str]]:
    """The records of one file, in lists cut from about ``block_bytes`` of text each.

    Each piece of text is split on the record boundary (``\\n``; ``\\n\\n`` for paragraphs) and its last part
    waits for the next piece.  For paragraphs that is exact too: every ``\\n\\n`` separates the paragraphs
    around it, wherever ``split("\\n\\n")`` would have cut, and a blank line next to a cut is dropped either way.
    A record longer than a block is held whole until it ends.
    """
    if record == "regex":
        yield to_records(read_text(path), record, pattern)
        return
    rest: list[str] = []  # the pieces of the unfinished last record
    for text in iter_text(path, block_bytes):
        parts = text.split("\n\n" if record == "paragraph" else "\n")
        if len(parts) == 1:
            rest.append(text)
            continue
        parts[0] = "".join([*rest, parts[0]])
        rest = [parts.pop()]
        if record == "paragraph":
            yield [r for part in parts for r in to_records(part, record)]
        else:
            yield parts if record == "verbatim_line" else list(filter(str.strip, parts))
    yield to_records("".join(rest), record)


def iter_record_blocks(paths: Iterable[Path], record: str, pattern: str | None = None,
                       block_bytes: int = BLOCK_BYTES) -> Iterator[list[str]]:
    """The records of ``paths`` in order, in lists of about ``block_bytes`` of text (small files share one)."""
    block: list[str] = []
    size = 0
    for path in paths:
        for records in _file_records(Path(path), record, pattern, block_bytes):
            if block:
                block.extend(records)  # a fresh list from _file_records: extending it in place is safe
            else:
                block = records
            size += sum(map(len, records)) + len(records)
            if size >= block_bytes:
                yield block
                block, size = [], 0
    if block:
        yield block


def corpus_files(raw_dir: Path) -> list[Path]:
    """Every file of a corpus folder, in a stable order."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise TextCorpusError(f"{raw_dir}: corpus folder not found; run the download stage first (dvc repro download)")
    files = sorted(p for p in raw_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise TextCorpusError(f"{raw_dir}: corpus folder is empty")
    return files
