"""Lines that keep the kernel off weak cells: GRUB badram, memmap=, memtest=.

GRUB 2's `badram addr,mask[,addr,mask...]` (GRUB manual, "badram"; GRUB_BADRAM in
/etc/default/grub) filters a page out of the memory map it hands the kernel when every
bit of the page address that the mask enables equals the same bit of `addr`: page & mask ==
addr & mask. A mask of ~(G - 1) therefore fences the whole G-aligned block around a bad
address. We fence blocks of --badram-granularity (default 1 MiB) rather than single pages
because memory controllers interleave channels and ranks: which physical address a cell
answers to can change with the DIMM slot, so seed 002's author found that 128 KiB covered
every interleaving permutation of his four modules and fenced 1 MiB for margin. Worked
example (seed 002): bad bits in 0x36a7xxxxx, 0x460exxxxx and 0x4ea0xxxxx give
GRUB_BADRAM="0x36a700000,0xfffffffffff00000,0x460e00000,0xfffffffffff00000,0x4ea000000,0xfffffffffff00000".

The kernel's own `memmap=SIZE$ADDR` (x86: marks the range reserved in the e820 map) does
the same without GRUB's help; GRUB's config language eats `$`, so in grub.cfg it is written
`\\$` and in /etc/default/grub (a shell file that grub-mkconfig expands once more) `\\\\\\$`.
`memtest=N` (kernels built with CONFIG_MEMTEST) runs N simple pattern passes over free
memory at boot and reserves what fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List

from shakeout.memtest.cells import WeakCell

DEFAULT_GRANULARITY_BYTES = 1 << 20
PAGE_BYTES = 4096
ADDRESS_MASK = (1 << 64) - 1
KERNEL_MEMTEST_PASSES = 4

WHERE_EACH_WORKS = (
    "GRUB_BADRAM: GRUB 2 removes the blocks from the memory map it gives the kernel; that works when "
    "the kernel takes its memory map from GRUB (legacy BIOS boot). Booted through UEFI, Linux reads the "
    "firmware's map itself, so the filter may not reach it, and under Secure Boot GRUB's lockdown refuses "
    "the badram command: use memmap= there.",
    "memmap=SIZE$ADDR: understood by the kernel itself on x86 (BIOS or UEFI boot, any boot loader); it "
    "reserves the range. Other architectures ignore it (on arm64 a devicetree reserved-memory node does "
    "this).",
    "memtest=N: needs a kernel built with CONFIG_MEMTEST (check with grep CONFIG_MEMTEST /boot/config-$(uname -r)); "
    "its simple fill-and-compare patterns catch stuck bits, rarely a weak cell that needs heat or moving "
    "inversions, so it complements the lines above rather than replacing them.",
    "A cell that fails is a reason to replace the module (or use ECC memory): fencing buys time, and more "
    "cells often follow, as they did in seed 002 with heat.",
)


def badram_mask(granularity_bytes: int) -> int:
    return ~(granularity_bytes - 1) & ADDRESS_MASK


def badram_covers(addr: int, mask: int, physical_address: int) -> bool:
    """GRUB's rule for the page that holds physical_address."""
    page = physical_address & ~(PAGE_BYTES - 1)
    return page & mask == addr & mask


def fence_blocks(physical_addresses: Iterable[int], granularity_bytes: int) -> List[int]:
    return sorted({a & badram_mask(granularity_bytes) for a in physical_addresses})


def size_with_unit(n: int) -> str:
    """The kernel's memparse suffixes: 1048576 -> '1M'."""
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


@dataclass
class Fencing:
    granularity_bytes: int
    blocks: List[int] = field(default_factory=list)
    virtual_only: int = 0  # cells without a physical address: nothing can be fenced for them

    @property
    def grub_badram(self) -> str:
        mask = badram_mask(self.granularity_bytes)
        pairs = ",".join(f"{b:#x},{mask:#x}" for b in self.blocks)
        return f'GRUB_BADRAM="{pairs}"' if self.blocks else ""

    @property
    def memmap(self) -> List[str]:
        size = size_with_unit(self.granularity_bytes)
        return [f"memmap={size}${b:#x}" for b in self.blocks]

    @property
    def grub_cfg_memmap(self) -> str:
        """As typed at GRUB's edit prompt or in grub.cfg: GRUB would expand a bare $."""
        return " ".join(p.replace("$", "\\$") for p in self.memmap)

    @property
    def default_grub_memmap(self) -> str:
        """For /etc/default/grub, which the shell expands once more before GRUB sees it."""
        params = " ".join(p.replace("$", "\\\\\\$") for p in self.memmap)
        return f'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT {params}"' if params else ""

    def to_dict(self) -> Dict[str, Any]:
        return {
            "granularity_bytes": self.granularity_bytes,
            "blocks": [{"start": f"{b:#x}", "end": f"{b + self.granularity_bytes - 1:#x}"} for b in self.blocks],
            "grub_badram": self.grub_badram,
            "memmap": self.memmap,
            "grub_cfg_memmap": self.grub_cfg_memmap,
            "etc_default_grub_memmap": self.default_grub_memmap,
            "kernel_memtest": f"memtest={KERNEL_MEMTEST_PASSES}",
            "cells_without_physical_address": self.virtual_only,
            "where_each_works": list(WHERE_EACH_WORKS),
        }


def fence(cells: Iterable[WeakCell], granularity_bytes: int = DEFAULT_GRANULARITY_BYTES) -> Fencing:
    cells = list(cells)
    physical = [c.address for c in cells if c.physical]
    return Fencing(granularity_bytes, fence_blocks(physical, granularity_bytes), len(cells) - len(physical))
