"""Per-CPU and VNET data of the sample kernel (tests/fixture/pcpu.rs lays
them out: CPUs 0-3 of 8 slots, a counter(9) stored as an offset from
__pcpu, as amd64 kernels of FreeBSD 13 and later store them)."""

import struct

import pytest

import kvm

MAXCPUS = 8
NCPUS = 4


def dpcpu_value(cpu: int) -> int:
    """CPU cpu's copy of pcpu_entry_dpcpu_word (PerCpu::dpcpu_value)."""
    return 0xD0C0_0000_0000_0000 | cpu << 8 | 0x11


def counter_share(cpu: int) -> int:
    """CPU cpu's share of fixture_counter (PerCpu::counter_share)."""
    return 1000 + 17 * cpu * cpu


def test_cpu_counts(dump):
    assert dump.max_cpus() == MAXCPUS
    assert dump.ncpus() == NCPUS == dump.cpus
    assert [dump.pcpu(c) is not None for c in range(MAXCPUS + 1)] == [
        c < NCPUS for c in range(MAXCPUS + 1)
    ]


def test_dynamic_per_cpu_variables(dump):
    start = dump.symbol("__start_set_pcpu")
    stop = dump.symbol("__stop_set_pcpu")
    raw = dump.symbol("pcpu_entry_dpcpu_word")
    assert start <= raw < stop
    for cpu in range(NCPUS):
        dump.dpcpu_set_cpu(cpu)
        at = dump.nlist_symbol("_dpcpu_word")
        assert not start <= at < stop
        assert dump.read_u64(at) == dpcpu_value(cpu)
    with pytest.raises(kvm.KvmError, match="no per-CPU area"):
        dump.dpcpu_set_cpu(NCPUS)
    with pytest.raises(KeyError):
        dump.nlist_symbol("no_such_variable")


def test_vnet_variables(dump):
    assert dump.read_u64(dump.nlist_symbol("vnet_word")) == 0x7E70_0000_00AB_CDEF


def test_counter(dump):
    base = dump.read_u64(dump.symbol("fixture_counter"))
    assert base < 1 << 63  # an offset from __pcpu
    shares = [
        struct.unpack("<Q", dump.read_zpcpu(base, 8, cpu))[0] for cpu in range(NCPUS)
    ]
    assert shares == [counter_share(c) for c in range(NCPUS)]
    assert dump.counter_u64_fetch(base) == sum(shares)
