"""Which register will a stopped thread read next? So that a flipped bit is one the code uses.

A flip into a register the code does not read before overwriting it changes nothing, and
a real mercurial core's wrong bit is by definition in a value that is used. So the register
flipper asks, at the stopped thread's instruction pointer: walking forward along the path
the code most likely takes, which register of the wanted kind is read before it is written?
That register is live there, and the instruction that reads it is named in the evidence.

The walk (capstone with detail, on the bytes at the instruction pointer):
- reads before writes: an instruction's read registers are candidates unless an earlier
  instruction on the path wrote them; a 32- or 64-bit general write (which zero-extends)
  and any vector write end a register's life, an 8- or 16-bit write does not;
- zeroing and all-ones idioms (xor/sub/sbb/pxor/pcmpeq... with both sources one register)
  read nothing; nor do hints, fences and push (the caller's value, restored by pop); a
  lane extract with a nonzero lane does not read the low 64 bits; a read of part of a
  general register counts only if that part holds the flipped bit (ah: bits 8-15);
- an unconditional direct jump is followed; a conditional one is followed when it jumps
  backwards (a loop goes round again) and falls through when it jumps forwards;
- a call, return, indirect jump, trap (ud2, int3, hlt), system call or undecodable byte
  ends the walk (nothing is chosen past it: what the callee reads is not known here).
Not modelled: a cmov's source counts as read whatever the condition.

Vector registers are named xmm0-xmm15 whatever width the instruction uses (the flipper
edits the low 128 bits, the XSAVE legacy area); xmm16-31 are not candidates.
"""

from __future__ import annotations

import os
import re
from typing import Callable, Dict, List, Optional, Set, Tuple

GENERAL_64 = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", *(f"r{n}" for n in range(8, 16)))
_LEGACY = {"a": "rax", "b": "rbx", "c": "rcx", "d": "rdx"}
# With both sources the same register their result does not depend on its value: zero,
# all ones, or (sbb) the carry flag alone.
_IDIOMS = {"xor", "sub", "sbb", "pxor", "xorps", "xorpd", "vpxor", "vpxord", "vpxorq", "vxorps", "vxorpd",
           "psubb", "psubw", "psubd", "psubq", "vpsubb", "vpsubw", "vpsubd", "vpsubq", "pcmpeqb", "pcmpeqw",
           "pcmpeqd", "pcmpeqq", "vpcmpeqb", "vpcmpeqw", "vpcmpeqd", "vpcmpeqq"}  # fmt: skip
# Instructions whose register reads are no use of the value: hints, fences, address-only
# operations, and push (the value is kept for the caller, who gets it back by pop).
_NO_USE = ("nop", "prefetch", "endbr", "lfence", "sfence", "mfence", "pause", "clflush", "clwb", "push")
# Reads of one lane: with a nonzero immediate they do not read the low 64 bits a flip is in.
_LANE_READS = ("pextr", "vpextr", "extractps", "vextractps", "vextract")
_END = {"ud2", "hlt", "int3", "syscall", "sysenter"}
MAX_INSTRUCTIONS = 64


def general_register(name: str) -> Tuple[Optional[str], bool]:
    """('rax', True) for eax: the 64-bit register a name is part of, and whether writing it kills the whole."""
    if name in GENERAL_64:
        return name, True
    numbered = re.fullmatch(r"r(\d+)([dwb])", name)
    if numbered and 8 <= int(numbered.group(1)) <= 15:
        return f"r{numbered.group(1)}", numbered.group(2) == "d"
    if re.fullmatch(r"e[abcd]x|e[sd]i|e[sb]p", name):
        return "r" + name[1:], True
    if re.fullmatch(r"[abcd]x", name):
        return _LEGACY[name[0]], False
    if re.fullmatch(r"[abcd][lh]", name):
        return _LEGACY[name[0]], False
    if name in ("si", "di", "sp", "bp", "sil", "dil", "spl", "bpl"):
        return "r" + name[:2], False
    return None, False


def read_covers(name: str, bit: int) -> bool:
    """Whether reading the general register `name` reads bit `bit` of its 64-bit register."""
    if name in GENERAL_64:
        return True
    if re.fullmatch(r"r\d+d|e[abcd]x|e[sd]i|e[sb]p", name):
        return bit < 32
    if re.fullmatch(r"r\d+w|[abcd]x|si|di|sp|bp", name):
        return bit < 16
    if re.fullmatch(r"[abcd]h", name):
        return 8 <= bit < 16
    return bit < 8  # al, r8b, sil ...


def vector_register(name: str) -> Optional[str]:
    """'xmm3' for xmm3, ymm3 or zmm3; None for xmm16-31 and anything else."""
    found = re.fullmatch(r"[xyz]mm(\d+)", name)
    if found and int(found.group(1)) < 16:
        return f"xmm{found.group(1)}"
    return None


def _normalise(name: str, kind: str) -> Tuple[Optional[str], bool]:
    if kind == "vector":
        return vector_register(name), True
    return general_register(name)


CodeReader = Callable[[int, int], bytes]


def next_read(
    code_at: CodeReader, pc: int, kind: str, allowed: Tuple[str, ...], bit: int = 0
) -> Optional[Dict[str, str]]:
    """The first register of `kind` among `allowed` whose bit `bit` is read before the register
    is written on the path from pc, or None.

    code_at(address, n) returns up to n bytes of code at address (fewer at a mapping's end)."""
    import capstone  # a declared dependency; imported here so the flipper loads without it

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    written: Set[str] = set()
    window_at, window = pc, code_at(pc, 256)
    for _ in range(MAX_INSTRUCTIONS):
        if not window_at <= pc <= window_at + len(window) - 16:
            window_at, window = pc, code_at(pc, 256)
        insn = next(md.disasm(window[pc - window_at :], pc, 1), None)
        if insn is None:
            return None
        reads, writes = insn.regs_access()
        read_names = [insn.reg_name(r) for r in reads]
        write_names = [insn.reg_name(r) for r in writes]
        mnemonic = insn.mnemonic.split()[-1]  # "bnd jmp" is a jmp
        if mnemonic in _END:
            return None
        registers = [op.reg for op in insn.operands if op.type == capstone.x86.X86_OP_REG]
        if mnemonic in _IDIOMS and len(registers) >= 2 and registers[-1] == registers[-2]:
            read_names = []
        if mnemonic.startswith(_NO_USE):
            read_names = []
        immediates = [op.imm for op in insn.operands if op.type == capstone.x86.X86_OP_IMM]
        if kind == "vector" and mnemonic.startswith(_LANE_READS) and immediates and immediates[-1]:
            read_names = []
        for name in read_names:
            register, _ = _normalise(name, kind)
            if register in allowed and register not in written and (kind == "vector" or read_covers(name, bit)):
                return {"register": register, "at": f"{pc:#x}", "read_by": f"{insn.mnemonic} {insn.op_str}".strip()}
        for name in write_names:
            register, kills = _normalise(name, kind)
            if register is not None and kills:
                written.add(register)
        if insn.group(capstone.CS_GRP_CALL) or insn.group(capstone.CS_GRP_RET) or insn.group(capstone.CS_GRP_INT):
            return None
        if insn.group(capstone.CS_GRP_JUMP):
            target = insn.operands[0] if insn.operands else None
            if target is None or target.type != capstone.x86.X86_OP_IMM:
                return None  # indirect
            if mnemonic == "jmp" or target.imm <= pc:
                pc = target.imm
                continue
        pc += insn.size
    return None


class ProcessCode:
    """Code bytes of a stopped thread's process, read through /proc/PID/mem (a tracer may)."""

    def __init__(self, pid: int) -> None:
        self.fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)

    def __call__(self, address: int, n: int) -> bytes:
        while n > 0:
            try:
                return os.pread(self.fd, n, address)
            except OSError:
                n //= 2  # the instruction may sit at a mapping's end
        return b""

    def close(self) -> None:
        os.close(self.fd)


def function_ranges(pid: int, names: Callable[[str], bool]) -> List[Tuple[int, int, str]]:
    """(start, end, name) of the functions of PID's executable whose names pass `names`,
    at the addresses they are loaded at (ELF symbols; PIE base from /proc/PID/maps)."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    exe = os.readlink(f"/proc/{pid}/exe")
    with open(f"/proc/{pid}/exe", "rb") as handle:
        elf = ELFFile(handle)
        base = 0
        if elf["e_type"] == "ET_DYN":
            first_load = min(s["p_vaddr"] for s in elf.iter_segments() if s["p_type"] == "PT_LOAD")
            base = _mapped_at(pid, exe) - first_load
        found = []
        for section in elf.iter_sections():
            if not isinstance(section, SymbolTableSection):
                continue
            for symbol in section.iter_symbols():
                if symbol["st_info"]["type"] == "STT_FUNC" and symbol["st_size"] and names(symbol.name):
                    start = base + symbol["st_value"]
                    found.append((start, start + symbol["st_size"], symbol.name))
    return sorted(set(found))


def _mapped_at(pid: int, path: str) -> int:
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() == path and int(fields[2], 16) == 0:
                return int(fields[0].split("-")[0], 16)
    raise OSError(f"{path} is not mapped in process {pid}")


def symbolise(address: int, ranges: List[Tuple[int, int, str]]) -> str:
    """'clmul_run+0x4c' for an address inside one of the ranges, else its hex."""
    for start, end, name in ranges:
        if start <= address < end:
            return f"{name}+{address - start:#x}"
    return f"{address:#x}"
