"""How far below the caller's stack pointer can each function touch? (x86-64, static)

Method: abstract interpretation over every path of the function and of everything it
calls or jumps to inside the image. The state is the stack pointer as an offset from the
caller's stack pointer S (at entry: -8, the return address), the frame pointer when it
holds such an offset, and any other register that holds one (so `lea r11,[rsp-0x10000]`
... `cmp rsp,r11; jne` probe loops of -fstack-clash-protection are followed exactly, one
page at a time). S is 16-byte aligned, as the ABI requires at a call, which makes
`and rsp,-16` exact. Every memory operand based on rsp (or a known rbp), every push,
every call's return address and every `or $0,[rsp]` probe (-fstack-check and
stack-clash probes touch memory without keeping anything there) is an access; the depth
of a function is the deepest access below S over all paths, including what its callees
touch. A probe is an access, and it is also listed on its own.

Invariants: the result is an upper bound of what any execution touches, as long as
`complete` is True. Anything the interpreter cannot follow (an indirect jump or call other
than through a GOT slot this image fills, a write to rsp from an unknown value, too many
states) makes `complete` False and says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, FrozenSet, List, Optional, Set, Tuple

from capstone import CS_ARCH_X86, CS_MODE_64, Cs, CsError, CsInsn
from capstone import x86_const as X

from shakeout.vdso.image import Image

MAX_STATES = 20000
ENTRY_SP = -8  # the return address the call pushed
CONDITIONAL = {
    "je": lambda a, b: a == b, "jne": lambda a, b: a != b,
    "jb": lambda a, b: a < b, "jae": lambda a, b: a >= b, "ja": lambda a, b: a > b, "jbe": lambda a, b: a <= b,
    "jl": lambda a, b: a < b, "jge": lambda a, b: a >= b, "jg": lambda a, b: a > b, "jle": lambda a, b: a <= b,
}  # fmt: skip


@dataclass(frozen=True)
class Probe:
    address: int
    depth: int  # bytes below the caller's stack pointer


@dataclass
class FunctionStack:
    name: str
    address: int
    static_bytes: int
    leaf: bool
    probes: List[Probe] = field(default_factory=list)
    decided_by: List[str] = field(default_factory=list)  # call chain to the deepest access
    complete: bool = True
    notes: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class State:
    address: int
    sp: int
    fp: Optional[int]
    regs: FrozenSet[Tuple[int, int]]  # (register id, offset from S)
    cmp: Optional[Tuple[int, int]] = None  # known operands of the last cmp


@dataclass
class _Summary:
    depth: int
    leaf: bool
    probes: Set[Probe]
    decided_by: List[str]
    complete: bool
    notes: List[str]


class StackAnalyzer:
    def __init__(self, image: Image) -> None:
        self.image = image
        self.cs = Cs(CS_ARCH_X86, CS_MODE_64)
        self.cs.detail = True
        self.insns: Dict[int, Optional[CsInsn]] = {}
        self.summaries: Dict[int, _Summary] = {}
        self.in_progress: Set[int] = set()

    # -- decoding --------------------------------------------------------------------
    def insn(self, address: int) -> Optional[CsInsn]:
        if address not in self.insns:
            code = self.image.code_at(address, 16)
            decoded = None
            if code:
                try:
                    decoded = next(self.cs.disasm(code, address, 1), None)
                except CsError:
                    decoded = None
            self.insns[address] = decoded
        return self.insns[address]

    # -- public ------------------------------------------------------------------------
    def function(self, name: str) -> FunctionStack:
        address = self.image.functions[name]
        s = self.summary(address)
        return FunctionStack(
            name=name,
            address=address,
            static_bytes=s.depth,
            leaf=s.leaf,
            probes=sorted(s.probes, key=lambda p: (p.address, p.depth)),
            decided_by=s.decided_by,
            complete=s.complete,
            notes=s.notes,
        )

    def summary(self, address: int) -> _Summary:
        if address in self.summaries:
            return self.summaries[address]
        if address in self.in_progress:
            return _Summary(8, False, set(), [], False, [f"recursive call at {address:#x}"])
        self.in_progress.add(address)
        summary = self._walk(address)
        self.in_progress.discard(address)
        self.summaries[address] = summary
        return summary

    # -- the interpreter -------------------------------------------------------------------
    def _walk(self, entry: int) -> _Summary:
        out = _Summary(-ENTRY_SP, True, set(), [], True, [])
        seen: Set[State] = set()
        work = [State(entry, ENTRY_SP, None, frozenset())]
        while work:
            state = work.pop()
            if state in seen:
                continue
            if len(seen) >= MAX_STATES:
                self._incomplete(out, f"more than {MAX_STATES} states")
                break
            seen.add(state)
            work.extend(self._step(state, out))
        return out

    @staticmethod
    def _incomplete(out: _Summary, why: str) -> None:
        out.complete = False
        if why not in out.notes:
            out.notes.append(why)

    @staticmethod
    def _touch(out: _Summary, offset: int, via: Optional[List[str]] = None) -> None:
        if -offset > out.depth:
            out.depth = -offset
            out.decided_by = via or []

    def _mem_offset(self, op: object, sp: int, fp: Optional[int], regs: Dict[int, int]) -> Optional[int]:
        mem = op.mem  # type: ignore[attr-defined]
        if mem.index != 0:
            return None
        if mem.base == X.X86_REG_RSP:
            return int(sp + mem.disp)
        if mem.base == X.X86_REG_RBP and fp is not None:
            return int(fp + mem.disp)
        if mem.base in regs:
            return int(regs[mem.base] + mem.disp)
        return None

    def _step(self, state: State, out: _Summary) -> List[State]:
        insn = self.insn(state.address)
        if insn is None:
            self._incomplete(out, f"undecodable or outside the image at {state.address:#x}")
            return []
        sp, fp, regs = state.sp, state.fp, dict(state.regs)
        m, ops = insn.mnemonic, insn.operands
        nxt = state.address + insn.size

        # Memory accesses (lea only computes an address).
        if m != "lea" and m != "nop" and not m.startswith("prefetch"):
            for op in ops:
                if op.type == X.X86_OP_MEM:
                    off = self._mem_offset(op, sp, fp, regs)
                    if off is not None:
                        self._touch(out, off)
                        if m == "or" and len(ops) == 2 and ops[1].type == X.X86_OP_IMM and ops[1].imm == 0:
                            out.probes.add(Probe(insn.address, -off))

        def reg(i: int) -> int:
            return int(ops[i].reg) if ops[i].type == X.X86_OP_REG else -1

        def imm(i: int) -> Optional[int]:
            """An immediate operand, or a branch through a GOT slot this image fills."""
            if ops[i].type == X.X86_OP_IMM:
                return int(ops[i].imm)
            if ops[i].type == X.X86_OP_MEM and ops[i].mem.base == X.X86_REG_RIP and ops[i].mem.index == 0:
                return self.image.got_targets.get(nxt + int(ops[i].mem.disp))
            return None

        def value(i: int) -> Optional[int]:
            r = reg(i)
            if r == X.X86_REG_RSP:
                return sp
            if r == X.X86_REG_RBP and fp is not None:
                return fp
            return regs.get(r)

        cmp: Optional[Tuple[int, int]] = None
        successors: List[int] = [nxt]

        if m in ("ret", "retq", "hlt", "ud2", "int3"):
            return []
        if m == "push":
            sp -= 8
            self._touch(out, sp)
        elif m == "pop":
            sp += 8
            if reg(0) == X.X86_REG_RBP:
                fp = None
        elif m in ("sub", "add") and reg(0) == X.X86_REG_RSP:
            delta = imm(1) if imm(1) is not None else regs.get(reg(1))
            if imm(1) is None:
                self._incomplete(out, f"{m} rsp by a register at {insn.address:#x}")
                return []
            sp = sp - delta if m == "sub" else sp + delta  # type: ignore[operator]
        elif m == "and" and reg(0) == X.X86_REG_RSP and imm(1) is not None:
            align = -int(imm(1))  # type: ignore[arg-type]
            sp = (sp & -16) - max(0, align - 16)  # S is 16-aligned; larger alignments: worst case
        elif m == "leave":
            if fp is None:
                self._incomplete(out, f"leave with an unknown frame pointer at {insn.address:#x}")
                return []
            sp, fp = fp + 8, None
        elif m in ("mov", "lea") and reg(0) in (X.X86_REG_RSP, X.X86_REG_RBP):
            if m == "lea":
                base = self._mem_offset(ops[1], sp, fp, regs)
                val = base if ops[1].mem.index == 0 else None
            else:
                val = value(1)
            if reg(0) == X.X86_REG_RSP:
                if val is None:
                    self._incomplete(out, f"rsp set from an unknown value at {insn.address:#x}")
                    return []
                sp = val
            else:
                fp = val
        elif m in ("sub", "add") and reg(0) in regs and imm(1) is not None:
            r = reg(0)
            regs[r] = regs[r] - imm(1) if m == "sub" else regs[r] + imm(1)  # type: ignore[operator]
        elif m in ("mov", "lea") and ops and ops[0].type == X.X86_OP_REG:
            val = self._mem_offset(ops[1], sp, fp, regs) if m == "lea" else value(1)
            regs.pop(reg(0), None)
            if val is not None:
                regs[reg(0)] = val
        elif m == "cmp":
            a, b = value(0), value(1)
            if a is not None and b is not None:
                cmp = (a, b)
        elif m in ("call", "bnd call", "notrack call"):
            sp_at_call = sp
            out.leaf = False
            target = imm(0)
            if target is None or not self.image.contains(target):
                self._touch(out, sp_at_call - 8)  # at least the return address
                self._incomplete(out, f"call to an unknown target at {insn.address:#x}")
            else:
                callee = self.summary(target)
                name = self.image.name_of(target) or f"{target:#x}"
                self._touch(out, sp_at_call - callee.depth, [name, *callee.decided_by])
                out.probes.update(Probe(p.address, p.depth - sp_at_call) for p in callee.probes)
                if not callee.complete:
                    self._incomplete(out, "callee {}: {}".format(name, "; ".join(callee.notes)))
            for r in list(regs):  # the callee may clobber caller-saved registers
                if r not in (X.X86_REG_RBX, X.X86_REG_R12, X.X86_REG_R13, X.X86_REG_R14, X.X86_REG_R15):
                    del regs[r]
        elif m in ("jmp", "bnd jmp", "notrack jmp"):
            target = imm(0)
            if target is None or not self.image.contains(target):
                self._incomplete(out, f"indirect or external jump at {insn.address:#x}")
                return []
            successors = [target]
        elif m.startswith("j") or m.startswith("loop"):
            target = imm(0)
            if target is None:
                self._incomplete(out, f"indirect branch at {insn.address:#x}")
                return []
            decide = CONDITIONAL.get(m)
            if decide is not None and state.cmp is not None:
                successors = [target] if decide(*state.cmp) else [nxt]
            else:
                successors = [target, nxt]
        else:
            self._forget_written(insn, regs)
            if self._writes(insn, X.X86_REG_RSP):
                self._incomplete(out, f"{m} writes rsp at {insn.address:#x}")
                return []
            if self._writes(insn, X.X86_REG_RBP):
                fp = None
        return [State(a, sp, fp, frozenset(regs.items()), cmp) for a in successors]

    @staticmethod
    def _writes(insn: CsInsn, register: int) -> bool:
        try:
            _read, written = insn.regs_access()
        except CsError:
            return False
        return register in written

    @staticmethod
    def _forget_written(insn: CsInsn, regs: Dict[int, int]) -> None:
        try:
            _read, written = insn.regs_access()
        except CsError:
            return
        for r in written:
            regs.pop(r, None)


def analyze(image: Image) -> List[FunctionStack]:
    """Every exported function, by name (aliases at one address share one analysis)."""
    analyzer = StackAnalyzer(image)
    return [analyzer.function(name) for name in sorted(image.functions)]
