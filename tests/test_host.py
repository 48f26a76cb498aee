"""Host identity from fake /proc and /sys files: ARM boards by core part and device-tree model, x86 unchanged."""

from __future__ import annotations

from pathlib import Path

from edgeprof.measure import host

PI4_CPUINFO = "".join(f"""processor\t: {i}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

""" for i in range(4)) + "Hardware\t: BCM2835\nRevision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"

BIG_LITTLE = "".join(f"processor\t: {i}\nFeatures\t: fp asimd asimddp\nCPU implementer\t: 0x41\nCPU part\t: {part}\n\n"
                     for i, part in enumerate(["0xd05"] * 4 + ["0xd0b"] * 4))

X86 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13 64-Core Processor\nflags\t\t: fpu sse4_2 avx avx2 fma\n\n"


def fake_root(tmp_path: Path, cpuinfo: str, dt_model: str | None = None, dt_path: str = "proc/device-tree/model"):
    (tmp_path / "proc").mkdir(parents=True, exist_ok=True)
    (tmp_path / "proc" / "cpuinfo").write_text(cpuinfo)
    if dt_model is not None:
        path = tmp_path / dt_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(dt_model.encode() + b"\x00")  # the device tree's strings end in a NUL
    return tmp_path


def test_an_arm_board_is_named_by_its_cores_and_its_device_tree(tmp_path):
    root = fake_root(tmp_path, PI4_CPUINFO, "Raspberry Pi 4 Model B Rev 1.4")
    assert host.cpu_model(root) == "Cortex-A72"
    assert host.device_model(root) == "Raspberry Pi 4 Model B Rev 1.4"
    assert host.isa_flags(root) == ["asimd"]


def test_big_little_cores_are_counted_and_an_unknown_part_is_named_by_its_code():
    assert host.arm_cores(BIG_LITTLE) == "4x Cortex-A55 + 4x Cortex-A76"
    assert host.arm_cores("CPU implementer\t: 0x51\nCPU part\t: 0x805\n") == "Qualcomm Kryo 4xx Silver"
    assert host.arm_cores("CPU implementer\t: 0x61\nCPU part\t: 0x023\n") == "Apple M1 Firestorm"
    assert host.arm_cores("CPU implementer\t: 0x41\nCPU part\t: 0xfff\n") == "Arm part 0xfff"
    assert host.arm_cores("CPU implementer\t: 0x99\nCPU part\t: 0x001\n") == "implementer 0x99 part 0x001"
    assert host.arm_cores(X86) is None


def test_the_device_tree_under_sys_and_the_cpuinfo_model_line_are_fallbacks(tmp_path):
    root = fake_root(tmp_path / "a", BIG_LITTLE, "Rockchip RK3588 EVB", "sys/firmware/devicetree/base/model")
    assert host.device_model(root) == "Rockchip RK3588 EVB"
    assert host.device_model(fake_root(tmp_path / "b", PI4_CPUINFO)) == "Raspberry Pi 4 Model B Rev 1.4"
    assert host.device_model(fake_root(tmp_path / "c", X86)) is None


def test_two_arm_boards_no_longer_share_a_fingerprint(tmp_path, monkeypatch):
    def info(root):
        return {"cpu_model": host.cpu_model(root), "device_model": host.device_model(root), "machine": "aarch64",
                "isa_flags": host.isa_flags(root), "usable_cores": 4, "cgroup_cpu_quota": None}

    pi4 = info(fake_root(tmp_path / "pi4", PI4_CPUINFO, "Raspberry Pi 4 Model B Rev 1.4"))
    pi3 = info(fake_root(tmp_path / "pi3", PI4_CPUINFO.replace("0xd08", "0xd03"), "Raspberry Pi 3 Model B Rev 1.2"))
    same_soc = {**pi4, "device_model": "Raspberry Pi 400 Rev 1.0"}  # same cores, another board
    prints = {host.fingerprint(i) for i in (pi4, pi3, same_soc)}
    assert len(prints) == 3


def test_x86_reads_the_model_name_and_its_fingerprint_ignores_a_missing_board(tmp_path):
    root = fake_root(tmp_path, X86)
    assert host.cpu_model(root) == "AMD EPYC 7B13 64-Core Processor"
    assert host.isa_flags(root) == ["avx", "avx2", "fma", "sse4_2"]
    info = {"cpu_model": host.cpu_model(root), "isa_flags": host.isa_flags(root), "machine": "x86_64",
            "usable_cores": 2, "cgroup_cpu_quota": None}
    assert host.fingerprint({**info, "device_model": None}) == host.fingerprint(info)
