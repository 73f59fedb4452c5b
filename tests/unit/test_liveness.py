"""The register flipper's choice of register: read before written, along the likely path."""

import pytest

from shakeout.injectors.liveness import general_register, next_read, symbolise, vector_register

pytest.importorskip("capstone")

BASE = 0x1000
DATA = ("rax", "rcx", "rdx", "rbx", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rsi", "rdi")
XMM = tuple(f"xmm{n}" for n in range(16))


def code(hex_bytes: str):
    blob = bytes.fromhex(hex_bytes.replace(" ", ""))

    def at(address: int, n: int) -> bytes:
        offset = address - BASE
        return blob[offset : offset + n] if 0 <= offset < len(blob) else b""

    return at


def test_register_names_fold_to_the_register_a_flip_edits():
    assert general_register("eax") == ("rax", True)  # a 32-bit write zero-extends: the old value is dead
    assert general_register("al") == ("rax", False) and general_register("r9w") == ("r9", False)
    assert general_register("r10d") == ("r10", True) and general_register("sil") == ("rsi", False)
    assert general_register("xmm0") == (None, False)
    assert vector_register("zmm7") == "xmm7" and vector_register("ymm15") == "xmm15"
    assert vector_register("zmm16") is None  # beyond the XSAVE legacy area


def test_the_first_register_read_is_chosen():
    # pclmulqdq xmm0, xmm1, 0 reads xmm0 and xmm1
    found = next_read(code("66 0f 3a 44 c1 00"), BASE, "vector", XMM)
    assert found == {"register": "xmm0", "at": "0x1000", "read_by": "pclmulqdq xmm0, xmm1, 0"}


def test_a_register_written_before_it_is_read_is_dead():
    # mov eax, 5 ; add rbx, rax ; the flip must go to rbx (rax is overwritten first)
    found = next_read(code("b8 05 00 00 00  48 01 c3"), BASE, "general", DATA)
    assert found is not None and found["register"] == "rbx" and found["at"] == "0x1005"


def test_a_partial_write_leaves_the_rest_of_the_register_live():
    # mov al, 1 ; mov rbx, rax: rax's upper bits were never overwritten, so rax is the answer
    found = next_read(code("b0 01  48 89 c3"), BASE, "general", ("rax",))
    assert found is not None and found["register"] == "rax" and found["at"] == "0x1002"


def test_a_zeroing_idiom_reads_nothing():
    # pxor xmm0, xmm0 ; movdqa xmm2, xmm1: xmm1 is read, xmm0 never was
    found = next_read(code("66 0f ef c0  66 0f 6f d1"), BASE, "vector", XMM)
    assert found is not None and found["register"] == "xmm1"


def test_a_backward_branch_goes_round_the_loop_and_a_forward_one_falls_through():
    # 0x1000: mov rbx, 1 (kills rbx) ; 0x1007: jne 0x1000 (backward: taken) -> the loop head
    # kills rbx again and nothing else is read: no live data register before the walk ends
    loop = code("48 c7 c3 01 00 00 00  75 f7")
    assert next_read(loop, BASE, "general", ("rbx",)) is None
    # je +3 (forward: falls through) ; add rcx, rdx ; [skipped] ...
    forward = code("74 03  48 01 d1  48 01 c0")
    found = next_read(forward, BASE, "general", ("rcx", "rdx", "rax"))
    assert found is not None and found["register"] in ("rcx", "rdx") and found["at"] == "0x1002"


def test_a_call_or_return_ends_the_walk():
    assert next_read(code("c3  48 01 c3"), BASE, "general", DATA) is None
    assert next_read(code("e8 00 00 00 00  48 01 c3"), BASE, "general", DATA) is None


def test_undecodable_bytes_end_the_walk():
    assert next_read(code("ff ff"), BASE, "general", DATA) is None
    assert next_read(code(""), BASE, "vector", XMM) is None


def test_symbolise_names_the_function_and_offset():
    ranges = [(0x1000, 0x1100, "clmul_run")]
    assert symbolise(0x104C, ranges) == "clmul_run+0x4c"
    assert symbolise(0x2000, ranges) == "0x2000"


def test_hints_fences_and_push_are_no_use_of_a_value():
    # nop dword ptr [rax] ; prefetcht0 [rbx] ; push rcx ; add rdx, rsi -> rdx (the first real use)
    found = next_read(code("0f 1f 00  0f 18 0b  51  48 01 f2"), BASE, "general", DATA)
    assert found is not None and found["register"] == "rdx"


def test_a_read_of_a_part_counts_only_if_the_flipped_bit_is_in_it():
    # mov bl, ah (reads bits 8-15 of rax) ; add rcx, rax
    walk = code("88 e3  48 01 c1")
    assert next_read(walk, BASE, "general", ("rax",), bit=3)["at"] == "0x1002"  # bit 3 is not in ah
    assert next_read(walk, BASE, "general", ("rax",), bit=9)["at"] == "0x1000"


def test_three_operand_idioms_and_lane_extracts():
    # vpxor xmm0, xmm1, xmm1 (zero: reads nothing) ; pextrq rax, xmm2, 1 (upper lane) ; movq rax, xmm3
    found = next_read(code("c5 f1 ef c1  66 48 0f 3a 16 d0 01  66 48 0f 7e d8"), BASE, "vector", XMM)
    assert found is not None and found["register"] == "xmm3"


def test_bnd_jmp_is_followed_and_ud2_ends_the_walk():
    # bnd jmp +3 ; [add rax, rax skipped] ; add rcx, rcx
    assert next_read(code("f2 eb 03  48 01 c0  48 01 c9"), BASE, "general", DATA)["register"] == "rcx"
    assert next_read(code("0f 0b  48 01 c0"), BASE, "general", DATA) is None
