"""How far below the caller's stack pointer can each function touch? (x86-64, static)

Method: abstract interpretation over every path of the function. The state is the stack
pointer as an offset from the caller's stack pointer S (at entry: -8, the return address),
and every register known to hold such an offset (rbp as a frame pointer included, so
`lea r11,[rsp-0x10000]` ... `cmp rsp,r11; jne` probe loops of -fstack-clash-protection are
followed exactly, one page at a time). S is 16-byte aligned, as the ABI requires at a call,
which makes `and rsp,-16` exact. Every memory operand based on such a register, every
push, every call's return address and every `or $0,[rsp]` probe (-fstack-check and
stack-clash probes touch memory without keeping anything there) is an access; the depth of
a function is the deepest access below S over all paths, including what its callees touch.
A probe is an access, and it is also listed on its own.

An access at a stack address whose offset is not a constant (an on-stack array indexed by
a register, `mov %cl,-0x78(%rsp,%rdx,1)`, or through a register derived from a stack
address by arithmetic the interpreter does not model) is bounded by what the ABI lets the
function touch: its own frame and the 128-byte red zone below the stack pointer at that
instruction. An alloca or VLA (`sub %rax,%rsp`) cannot be bounded: incomplete.

Calls are summarised once per function and memoised (one summary per function, however
many callers): a caller adds its callee's depth at the call site's stack pointer and keeps
a reference to the callee (for its probes, the chain that decides its depth and the notes
that make it incomplete), never a copy. A jump to another function's entry is a tail call,
summarised the same way. Deep call chains are walked with an explicit stack of generators,
not Python recursion.

Invariants: the result is an upper bound of what any execution touches, as long as
`complete` is True (and every access stays within the frame and red zone, as the ABI
requires). Anything the interpreter cannot follow (an indirect jump or call other than
through a GOT slot this image fills, a write to rsp from an unknown value, recursion, too
many states) makes `complete` False and says why, once, in the function where it happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Generator, List, Optional, Set, Tuple

from capstone import CS_ARCH_X86, CS_MODE_64, Cs, CsError
from capstone import x86_const as X
from capstone.x86 import X86Op

from shakeout.vdso.image import Image

MAX_STATES = 20000  # per function
# A loop may move the stack pointer: a stack-clash probe loop, one page per turn and each
# turn decided by a cmp of known offsets, is followed for frames up to 256 KiB. Any other
# loop that moves it (an alloca in a loop) is unbounded: after a few stack pointers at one
# address the function is incomplete, rather than thousands of states later.
MAX_SP_PER_ADDRESS = 64
MAX_SP_UNDECIDED = 4
ENTRY_SP = -8  # the return address the call pushed
RED_ZONE_BYTES = 128  # System V x86-64: a function may use 128 bytes below rsp
CONDITIONAL = {
    "je": lambda a, b: a == b, "jne": lambda a, b: a != b,
    "jb": lambda a, b: a < b, "jae": lambda a, b: a >= b, "ja": lambda a, b: a > b, "jbe": lambda a, b: a <= b,
    "jl": lambda a, b: a < b, "jge": lambda a, b: a >= b, "jg": lambda a, b: a > b, "jle": lambda a, b: a <= b,
}  # fmt: skip
STOPS = frozenset({"ret", "retq", "hlt", "ud2", "int3"})
CALLS = frozenset({"call", "bnd call", "notrack call"})
JUMPS = frozenset({"jmp", "bnd jmp", "notrack jmp"})
OP_REG, OP_IMM, OP_MEM = X.X86_OP_REG, X.X86_OP_IMM, X.X86_OP_MEM

# The 16 general-purpose registers, tracked whole, by slot; NO_REG is every other register.
GP = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", *(f"r{n}" for n in range(8, 16)))
RBP, RSP, NO_REG = GP.index("rbp"), GP.index("rsp"), -1
CALLEE_SAVED = sum(1 << GP.index(r) for r in ("rbx", "rbp", "r12", "r13", "r14", "r15"))
NO_REGS: Tuple[Optional[int], ...] = (None,) * len(GP)


def _slots() -> Dict[int, Tuple[int, bool]]:
    """capstone register id -> (slot of its 64-bit register, is only a part of it)."""
    parts = {"rax": "eax ax al ah", "rbx": "ebx bx bl bh", "rcx": "ecx cx cl ch", "rdx": "edx dx dl dh"}
    parts.update({r: f"e{r[1:]} {r[1:]} {r[1:]}l" for r in ("rsi", "rdi", "rbp", "rsp")})
    parts.update({f"r{n}": f"r{n}d r{n}w r{n}b" for n in range(8, 16)})
    slots = {}
    for slot, full in enumerate(GP):
        slots[getattr(X, "X86_REG_" + full.upper())] = (slot, False)
        for part in parts[full].split():
            slots[getattr(X, "X86_REG_" + part.upper())] = (slot, True)
    return slots


SLOTS = _slots()


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
    # Why this function itself is incomplete, and which direct callees are; the callees'
    # own reasons are in Analysis.notes, once each.
    notes: List[str] = field(default_factory=list)


@dataclass
class Analysis:
    functions: List[FunctionStack]  # every exported function
    # Every incomplete function the analysis reached, exported or not -> its notes (own
    # reasons and references to incomplete callees: each reason is stated once).
    notes: Dict[str, List[str]]


@dataclass(frozen=True)
class Operand:
    kind: int  # OP_REG, OP_IMM or OP_MEM
    reg: int = NO_REG  # register slot
    partial: bool = False  # the operand is only part of the register (eax, al, ...)
    imm: int = 0
    base: int = NO_REG  # memory: slots of the base and index registers, the displacement
    index: int = NO_REG
    disp: int = 0
    rip: bool = False  # memory relative to the instruction pointer


@dataclass(frozen=True)
class Insn:
    """The part of a decoded instruction the interpreter uses (capstone's objects are large)."""

    address: int
    size: int
    mnemonic: str
    ops: Tuple[Operand, ...]
    read: int  # bit masks of register slots
    written: int
    writes_rsp: bool


@dataclass(frozen=True)
class State:
    address: int
    sp: int
    regs: Tuple[Optional[int], ...]  # per slot: the offset from S it holds, when known (rbp too)
    derived: int = 0  # bit mask: slots holding a stack address at an unknown offset
    cmp: Optional[Tuple[int, int]] = None  # known operands of the last cmp
    decided: bool = False  # reached through a branch that a cmp of known offsets decided


@dataclass
class _Summary:
    depth: int = -ENTRY_SP
    leaf: bool = True
    probes: Set[Tuple[int, int]] = field(default_factory=set)  # own probes: (address, depth)
    callees: Dict[int, int] = field(default_factory=dict)  # callee -> deepest offset of its S below ours
    via: Optional[int] = None  # the callee whose accesses decide `depth` (None: our own)
    notes: List[str] = field(default_factory=list)  # why this function itself is incomplete
    incomplete_callees: Dict[int, None] = field(default_factory=dict)  # ordered set
    order: int = 0  # finishing order: every callee finishes before its callers

    @property
    def complete(self) -> bool:
        return not self.notes and not self.incomplete_callees


def _mask(registers: List[int]) -> int:
    mask = 0
    for r in registers:
        slot = SLOTS.get(r)
        if slot is not None:
            mask |= 1 << slot[0]
    return mask


def _operand(o: X86Op) -> Operand:
    if o.type == OP_MEM:
        base = SLOTS.get(o.mem.base, (NO_REG, False))[0]
        index = SLOTS.get(o.mem.index, (NO_REG, False))[0]
        return Operand(OP_MEM, base=base, index=index, disp=o.mem.disp, rip=o.mem.base == X.X86_REG_RIP)
    if o.type == OP_REG:
        slot, partial = SLOTS.get(o.reg, (NO_REG, False))
        return Operand(OP_REG, reg=slot, partial=partial)
    return Operand(o.type, imm=o.imm if o.type == OP_IMM else 0)


def _join(a: State, b: State) -> State:
    """The least state covering a and b (same address and stack pointer): a register whose
    offsets differ holds a stack address at an unknown offset."""
    regs = tuple(x if x == y else None for x, y in zip(a.regs, b.regs))
    lost = sum(1 << i for i, (x, y) in enumerate(zip(a.regs, b.regs)) if x != y)
    return State(a.address, a.sp, regs, a.derived | b.derived | lost, b.cmp, b.decided)


# A walk yields the address of a callee it needs and is sent back its summary.
Walk = Generator[int, _Summary, _Summary]


class StackAnalyzer:
    def __init__(self, image: Image) -> None:
        self.image = image
        self.cs = Cs(CS_ARCH_X86, CS_MODE_64)
        self.cs.detail = True
        self.insns: Dict[int, Optional[Insn]] = {}
        self.summaries: Dict[int, _Summary] = {}
        self.probing: Set[int] = set()  # functions with probes of their own
        self.entries = set(image.functions.values()) | set(image.local_names) | set(image.sizes)

    # -- decoding --------------------------------------------------------------------
    def insn(self, address: int) -> Optional[Insn]:
        if address not in self.insns:
            self.insns[address] = self._decode(address)
        return self.insns[address]

    def _decode(self, address: int) -> Optional[Insn]:
        code = self.image.code_at(address, 16)
        if not code:
            return None
        try:
            raw = next(self.cs.disasm(code, address, 1), None)
            if raw is None:
                return None
            read, written = raw.regs_access()
            ops = tuple(_operand(o) for o in raw.operands)
        except CsError:
            return None
        return Insn(address, raw.size, raw.mnemonic, ops, _mask(read), _mask(written), X.X86_REG_RSP in written)

    # -- public ------------------------------------------------------------------------
    def analysis(self) -> Analysis:
        functions = [self.function(name) for name in sorted(self.image.functions)]
        notes = {self._name(a): self.notes(s) for a, s in sorted(self.summaries.items()) if not s.complete}
        return Analysis(functions, notes)

    def notes(self, summary: _Summary) -> List[str]:
        """Why a function is incomplete: its own reasons, and a reference per incomplete callee."""
        return summary.notes + [f"calls {self._name(c)}, which is incomplete" for c in summary.incomplete_callees]

    def function(self, name: str) -> FunctionStack:
        address = self.image.functions[name]
        s = self.summary(address)
        return FunctionStack(
            name=name,
            address=address,
            static_bytes=s.depth,
            leaf=s.leaf,
            probes=self.reachable_probes(address),
            decided_by=self.decided_by(s),
            complete=s.complete,
            notes=self.notes(s),
        )

    def summary(self, address: int) -> _Summary:
        """The memoised summary of the function at address (its callees summarised first)."""
        if address in self.summaries:
            return self.summaries[address]
        stack: List[Tuple[int, Walk]] = [(address, self._walk(address))]
        in_progress = {address}
        reply: Optional[_Summary] = None
        while stack:
            entry, walk = stack[-1]
            try:
                callee = walk.send(reply) if reply is not None else next(walk)
            except StopIteration as done:
                finished: _Summary = done.value
                finished.order = len(self.summaries)
                self.summaries[entry] = finished
                if finished.probes:
                    self.probing.add(entry)
                in_progress.discard(entry)
                stack.pop()
                reply = finished
                continue
            if callee in self.summaries:
                reply = self.summaries[callee]
            elif callee in in_progress:
                reply = _Summary(notes=[f"recursive call to {self._name(callee)}"])
            else:
                in_progress.add(callee)
                stack.append((callee, self._walk(callee)))
                reply = None
        return self.summaries[address]

    def reachable_probes(self, address: int) -> List[Probe]:
        """Every probe the function at address reaches, each callee's at the depth of its
        deepest call (a probe loop lists one probe per turn)."""
        if not self.probing:
            return []
        offsets = {address: 0}  # function -> deepest offset of its S below ours
        for f in sorted(self._reachable(address), key=lambda a: -self.summaries[a].order):
            for callee, offset in self.summaries[f].callees.items():
                offsets[callee] = max(offsets.get(callee, offset + offsets[f]), offset + offsets[f])
        probes = {(a, depth + offsets[f]) for f in offsets for a, depth in self.summaries[f].probes}
        return [Probe(a, d) for a, d in sorted(probes)]

    def decided_by(self, summary: _Summary) -> List[str]:
        chain = []
        while summary.via is not None:
            chain.append(self._name(summary.via))
            summary = self.summaries[summary.via]
        return chain

    def _reachable(self, address: int) -> Set[int]:
        seen = {address}
        work = [address]
        while work:
            for callee in self.summaries[work.pop()].callees:
                if callee not in seen:
                    seen.add(callee)
                    work.append(callee)
        return seen

    def _name(self, address: int) -> str:
        return self.image.name_of(address) or f"{address:#x}"

    # -- the interpreter -------------------------------------------------------------------
    def _walk(self, entry: int) -> Walk:
        """Every path from entry. States at one (address, stack pointer) are joined, so a
        loop that steps a pointer through an on-stack array ends (the pointer becomes a
        stack address at an unknown offset) while the stack pointer itself is never
        widened: a stack-clash probe loop is followed page by page."""
        out = _Summary()
        joined: Dict[Tuple[int, int], State] = {}
        stack_pointers: Dict[int, int] = {}  # address -> how many stack pointers it was reached with
        work = [State(entry, ENTRY_SP, NO_REGS)]
        steps = 0
        while work:
            state = work.pop()
            key = (state.address, state.sp)
            prior = joined.get(key)
            if prior is None:
                count = stack_pointers[state.address] = stack_pointers.get(state.address, 0) + 1
                if count > MAX_SP_PER_ADDRESS or (count > MAX_SP_UNDECIDED and not state.decided):
                    _incomplete(out, f"the stack pointer changes on every turn of a loop at {state.address:#x}")
                    break
            else:
                state = _join(prior, state)
                if state == prior:
                    continue
            joined[key] = state
            steps += 1
            if steps > MAX_STATES:
                _incomplete(out, f"more than {MAX_STATES} states")
                break
            insn = self.insn(state.address)
            if insn is None:
                _incomplete(out, f"undecodable or outside the image at {state.address:#x}")
                continue
            target = self._branch_target(insn, entry, state.sp)
            callee = (yield target) if target is not None else None
            work.extend(_Step(self, state, insn, out).run(callee))
        return out

    def _branch_target(self, insn: Insn, entry: int, sp: int) -> Optional[int]:
        """The function a call or tail jump enters, when it is one we can summarise.

        A jump is a tail call when it enters a known function, or when it leaves with the
        stack back at the return address for a place outside this function's known extent
        (stripped code: a frame torn down, then `jmp helper`)."""
        if insn.mnemonic not in CALLS and insn.mnemonic not in JUMPS:
            return None
        target = self.imm(insn)
        if target is None or not self.image.contains(target):
            return None
        if insn.mnemonic in CALLS:
            return target
        if target == entry:
            return None
        if target in self.entries:
            return target
        size = self.image.sizes.get(entry, 0)
        return target if sp == ENTRY_SP and not entry <= target < entry + size else None

    def imm(self, insn: Insn) -> Optional[int]:
        """The first operand as an immediate, or a branch through a GOT slot this image fills."""
        if not insn.ops:
            return None
        op = insn.ops[0]
        if op.kind == OP_IMM:
            return op.imm
        if op.kind == OP_MEM and op.rip and op.index == NO_REG:
            return self.image.got_targets.get(insn.address + insn.size + op.disp)
        return None


def _incomplete(out: _Summary, why: str) -> None:
    if why not in out.notes:
        out.notes.append(why)


def _touch(out: _Summary, offset: int, via: Optional[int] = None) -> None:
    if -offset > out.depth:
        out.depth = -offset
        out.via = via


class _Step:
    """One instruction applied to one state: the accesses it makes and the states after it."""

    def __init__(self, analyzer: StackAnalyzer, state: State, insn: Insn, out: _Summary) -> None:
        self.analyzer = analyzer
        self.insn = insn
        self.out = out
        self.sp = state.sp
        self.regs = state.regs
        self.derived = state.derived
        self.prior_cmp = state.cmp
        self.cmp: Optional[Tuple[int, int]] = None
        self.decided = False
        self.next = insn.address + insn.size

    def state_at(self, address: int) -> State:
        return State(address, self.sp, self.regs, self.derived, self.cmp, self.decided)

    # -- registers ---------------------------------------------------------------------
    def reg(self, i: int) -> int:
        ops = self.insn.ops
        return ops[i].reg if i < len(ops) and ops[i].kind == OP_REG else NO_REG

    def offset_in(self, slot: int) -> Optional[int]:
        """The stack offset a register holds, when known."""
        if slot == RSP:
            return self.sp
        return self.regs[slot] if slot != NO_REG else None

    def is_stack(self, slot: int) -> bool:
        return slot != NO_REG and (slot == RSP or self.regs[slot] is not None or bool(self.derived >> slot & 1))

    def address_of(self, op: Operand) -> Tuple[bool, Optional[int]]:
        """(is a stack address, its offset from S when that is a constant)."""
        base_stack = self.is_stack(op.base)
        if not base_stack and not self.is_stack(op.index):
            return False, None
        base = self.offset_in(op.base)
        if op.index != NO_REG or base is None:
            return True, None
        return True, base + op.disp

    def set_reg(self, slot: int, stack: bool, offset: Optional[int]) -> None:
        regs = list(self.regs)
        regs[slot] = offset
        self.regs = tuple(regs)
        bit = 1 << slot
        self.derived = self.derived | bit if stack and offset is None else self.derived & ~bit

    def forget_all(self, mask: int) -> None:
        """The registers in mask hold unknown values."""
        if mask & self.derived or any(self.regs[i] is not None for i in range(len(GP)) if mask >> i & 1):
            self.regs = tuple(None if mask >> i & 1 else v for i, v in enumerate(self.regs))
            self.derived &= ~mask

    # -- the instruction ---------------------------------------------------------------
    def run(self, callee: Optional[_Summary]) -> List[State]:
        m = self.insn.mnemonic
        if m != "lea" and m != "nop" and not m.startswith("prefetch"):
            self.accesses()
        if m in STOPS:
            return []
        if m in CALLS:
            successors = self.call(callee)
        elif m in JUMPS:
            successors = self.jump(callee)
        elif m[0] == "j" or m.startswith("loop"):
            successors = self.branch()
        else:
            successors = [self.next] if self.update_registers() else []
        return [self.state_at(a) for a in successors]

    def accesses(self) -> None:
        insn, out = self.insn, self.out
        for op in insn.ops:
            if op.kind != OP_MEM or (op.base == NO_REG and op.index == NO_REG):
                continue
            stack, offset = self.address_of(op)
            if offset is not None:
                _touch(out, offset)
                ops = insn.ops
                if insn.mnemonic == "or" and len(ops) == 2 and ops[1].kind == OP_IMM and ops[1].imm == 0:
                    out.probes.add((insn.address, -offset))
            elif stack:
                _touch(out, self.sp - RED_ZONE_BYTES)  # somewhere in the frame or the red zone

    def call(self, callee: Optional[_Summary]) -> List[int]:
        self.out.leaf = False
        self.enter(callee, self.sp, "call")
        self.forget_all(((1 << len(GP)) - 1) & ~CALLEE_SAVED)  # the callee may clobber the others
        return [self.next]

    def jump(self, callee: Optional[_Summary]) -> List[int]:
        if callee is not None:  # a tail call: the callee returns to our caller
            self.enter(callee, self.sp + 8, "jump")
            return []
        target = self.analyzer.imm(self.insn)
        if target is None or not self.analyzer.image.contains(target):
            _incomplete(self.out, f"indirect or external jump at {self.insn.address:#x}")
            return []
        return [target]

    def enter(self, callee: Optional[_Summary], callee_s: int, how: str) -> None:
        """Account for a function entered with its S at callee_s (our offsets)."""
        out, address = self.out, self.insn.address
        target = self.analyzer.imm(self.insn)
        if callee is None or target is None or target not in self.analyzer.summaries:
            if how == "call":
                _touch(out, self.sp - 8)  # at least the return address
            if callee is None or target is None:
                _incomplete(out, f"{how} to an unknown target at {address:#x}")
            else:  # recursion: the callee is still being walked
                _incomplete(out, "; ".join(callee.notes) + f" at {address:#x}")
            return
        out.leaf = out.leaf and callee.leaf
        out.callees[target] = max(out.callees.get(target, -callee_s), -callee_s)
        _touch(out, callee_s - callee.depth, target)
        if not callee.complete:
            out.incomplete_callees[target] = None

    def branch(self) -> List[int]:
        target = self.analyzer.imm(self.insn)
        if target is None:
            _incomplete(self.out, f"indirect branch at {self.insn.address:#x}")
            return []
        decide = CONDITIONAL.get(self.insn.mnemonic)
        if decide is not None and self.prior_cmp is not None:
            self.decided = True
            return [target] if decide(*self.prior_cmp) else [self.next]
        return [target, self.next]

    def update_registers(self) -> bool:
        """Apply the instruction to sp and the tracked registers; False ends this path."""
        insn, m, out = self.insn, self.insn.mnemonic, self.out
        ops = insn.ops
        r0 = self.reg(0)
        imm1 = ops[1].imm if len(ops) > 1 and ops[1].kind == OP_IMM else None
        if m == "push":
            self.sp -= 8
            _touch(out, self.sp)
        elif m == "pop":
            if r0 == RSP:
                _incomplete(out, f"pop rsp at {insn.address:#x}")
                return False
            self.sp += 8
            if r0 != NO_REG:
                self.set_reg(r0, False, None)
        elif m in ("sub", "add") and r0 == RSP:
            if imm1 is None:
                _incomplete(out, f"{m} rsp by a register at {insn.address:#x} (alloca or a variable-length array)")
                return False
            self.sp = self.sp - imm1 if m == "sub" else self.sp + imm1
        elif m == "and" and r0 == RSP and imm1 is not None:
            self.sp = (self.sp & -16) - max(0, -imm1 - 16)  # S is 16-aligned; larger alignments: worst case
        elif m == "leave":
            fp = self.regs[RBP]
            if fp is None:
                _incomplete(out, f"leave with an unknown frame pointer at {insn.address:#x}")
                return False
            self.sp = fp + 8
            self.set_reg(RBP, False, None)
        elif m in ("mov", "lea") and r0 != NO_REG and not ops[0].partial and len(ops) == 2:
            if m == "lea":
                stack, offset = self.address_of(ops[1])
            else:
                stack, offset = self.is_stack(self.reg(1)), self.offset_in(self.reg(1))
            if r0 == RSP:
                if offset is None:
                    _incomplete(out, f"rsp set from an unknown value at {insn.address:#x}")
                    return False
                self.sp = offset
            else:
                self.set_reg(r0, stack, offset)
        elif m in ("sub", "add") and r0 not in (NO_REG, RSP) and self.regs[r0] is not None and imm1 is not None:
            offset = self.regs[r0] or 0
            self.set_reg(r0, True, offset - imm1 if m == "sub" else offset + imm1)
        elif m == "cmp":
            a, b = self.offset_in(self.reg(0)), self.offset_in(self.reg(1))
            if a is not None and b is not None:
                self.cmp = (a, b)
        else:
            return self.other()
        return True

    def other(self) -> bool:
        """An instruction not modelled: what it writes is unknown, or a stack address at an
        unknown offset when it combines a stack address with something (add rax,rdx)."""
        insn = self.insn
        if insn.writes_rsp:
            _incomplete(self.out, f"{insn.mnemonic} writes rsp at {insn.address:#x}")
            return False
        written = insn.written
        if not written:
            return True
        derived = sum(1 << i for i in range(len(GP)) if written >> i & 1 and insn.read >> i & 1 and self.is_stack(i))
        self.forget_all(written)
        self.derived |= derived
        return True


def analyze(image: Image) -> Analysis:
    """Every exported function, by name (aliases at one address share one analysis)."""
    return StackAnalyzer(image).analysis()
