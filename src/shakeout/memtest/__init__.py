"""`shakeout memtest`: find weak RAM cells from a running system, and the lines that fence them off.

The hot loops are native (native/memtest.c, speaking the probe protocol); this package is
the rest, mostly pure: how much memory to test (sizes), errors into ranked weak cells
(cells), GRUB badram / memmap / memtest= lines (fencing), temperatures and ECC counters
(sensors), running the native tester with progress and interruption (session), and the
text and JSON reports (render).
"""
