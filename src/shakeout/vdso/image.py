"""Read a vDSO (or any vDSO-like shared object) into what the stack analysis needs.

Input is bytes: the running process's vDSO read from /proc/self/mem, or a file. Every
malformation a user can hand us — not ELF, truncated, wrong class, foreign machine, no
dynamic symbols, garbage — ends as one VdsoError with a one-line reason.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from shakeout.errors import ShakeoutError

MACHINES = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64"}


class VdsoError(ShakeoutError):
    """The image cannot be analysed; the message says why in one line."""


@dataclass
class Image:
    machine: str
    segments: List[Tuple[int, bytes]]  # (virtual address, contents) of PT_LOAD segments
    functions: Dict[str, int]  # exported function name -> virtual address
    sizes: Dict[int, int] = field(default_factory=dict)  # address -> st_size
    # GOT slot -> address of the function defined in this image that the dynamic linker
    # puts there (JUMP_SLOT/GLOB_DAT relocations): PLT calls resolve to the local
    # definition, as they do unless another object interposes the symbol.
    got_targets: Dict[int, int] = field(default_factory=dict)
    local_names: Dict[int, str] = field(default_factory=dict)  # .symtab functions, when not stripped

    names: Dict[int, str] = field(init=False, repr=False)  # address -> the name name_of gives

    def __post_init__(self) -> None:
        by_address: Dict[int, List[str]] = {}
        for name, address in self.functions.items():
            by_address.setdefault(address, []).append(name)
        self.names = {a: min(ns, key=lambda n: (not n.startswith("__"), n)) for a, ns in by_address.items()}

    def code_at(self, address: int, length: int = 16) -> Optional[bytes]:
        for vaddr, data in self.segments:
            if vaddr <= address < vaddr + len(data):
                return data[address - vaddr : address - vaddr + length]
        return None

    def contains(self, address: int) -> bool:
        return any(vaddr <= address < vaddr + len(data) for vaddr, data in self.segments)

    def name_of(self, address: int) -> Optional[str]:
        """The exported name (a `__` one first, as the vDSO's own), else the .symtab name."""
        return self.names.get(address) or self.local_names.get(address)


def running_vdso() -> bytes:
    """This process's vDSO, read from its own memory."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError as exc:
        raise VdsoError(f"cannot read /proc/self/maps: {exc.strerror}") from None
    m = re.search(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s+\[vdso\]$", maps, re.M)
    if not m:
        raise VdsoError("this process has no [vdso] mapping (not Linux, or vdso=0 on the kernel command line)")
    start, end = int(m.group(1), 16), int(m.group(2), 16)
    with open("/proc/self/mem", "rb") as mem:
        mem.seek(start)
        return mem.read(end - start)


def load_image(data: bytes, source: str = "image") -> Image:
    if len(data) < 4 or data[:4] != b"\x7fELF":
        raise VdsoError(f"{source} is not an ELF file")
    try:
        return _load(data, source)
    except VdsoError:
        raise
    except (
        ELFError,
        ValueError,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
        AssertionError,
        UnicodeDecodeError,
        OverflowError,
        MemoryError,
    ) as exc:
        raise VdsoError(f"{source} is a malformed ELF file ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # pyelftools raises assorted errors on garbage (struct.error and more)
        raise VdsoError(f"{source} is a malformed ELF file ({type(exc).__name__}: {exc})") from None


def _local_names(elf: ELFFile) -> Dict[int, str]:
    symtab: Any = elf.get_section_by_name(".symtab")
    if symtab is None or not hasattr(symtab, "iter_symbols"):
        return {}
    return {
        int(s["st_value"]): s.name
        for s in symtab.iter_symbols()
        if s["st_info"]["type"] == "STT_FUNC" and s.name and s["st_shndx"] != "SHN_UNDEF"
    }


def _got_targets(elf: ELFFile, functions: Dict[str, int]) -> Dict[int, int]:
    targets: Dict[int, int] = {}
    for section in elf.iter_sections():
        if section["sh_type"] not in ("SHT_RELA", "SHT_REL") or not hasattr(section, "iter_relocations"):
            continue
        symtab: Any = elf.get_section(section["sh_link"])
        for rel in section.iter_relocations():
            kind = rel["r_info_type"]
            if kind not in (7, 6) or not rel["r_info_sym"]:  # R_X86_64_JUMP_SLOT, R_X86_64_GLOB_DAT
                continue
            name = symtab.get_symbol(rel["r_info_sym"]).name
            if name in functions:
                targets[int(rel["r_offset"])] = functions[name]
    return targets


def _load(data: bytes, source: str) -> Image:
    elf = ELFFile(io.BytesIO(data))
    if elf.elfclass != 64:
        raise VdsoError(f"{source} is a {elf.elfclass}-bit ELF file; only 64-bit images are analysed")
    machine = MACHINES.get(elf["e_machine"])
    if machine is None:
        raise VdsoError("{} is for machine {}, not x86-64 or aarch64".format(source, elf["e_machine"]))
    if machine != "x86_64":
        raise VdsoError(f"{source} is an aarch64 image; the stack analysis handles x86-64 only for now")
    segments = []
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_LOAD":
            body = seg.data()
            if len(body) < seg["p_filesz"]:
                raise VdsoError(f"{source} is truncated (a loadable segment ends past the end of the file)")
            segments.append((int(seg["p_vaddr"]), body))
    if not segments:
        raise VdsoError(f"{source} has no loadable segments")
    dynsym = elf.get_section_by_name(".dynsym")
    if dynsym is None or not hasattr(dynsym, "iter_symbols"):
        raise VdsoError(f"{source} has no dynamic symbol table (.dynsym)")
    functions: Dict[str, int] = {}
    sizes: Dict[int, int] = {}
    for sym in dynsym.iter_symbols():
        if (
            sym["st_info"]["type"] == "STT_FUNC"
            and sym["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK")
            and sym["st_shndx"] != "SHN_UNDEF"
            and sym.name
        ):
            functions[sym.name] = int(sym["st_value"])
            sizes[int(sym["st_value"])] = int(sym["st_size"])
    if not functions:
        raise VdsoError(f"{source} exports no functions")
    image = Image(machine, segments, functions, sizes, _got_targets(elf, functions), _local_names(elf))
    missing = [n for n, a in functions.items() if not image.contains(a)]
    if missing:
        raise VdsoError(f"{source}: exported function {missing[0]} lies outside every loadable segment")
    return image
