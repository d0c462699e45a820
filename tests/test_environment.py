"""The machine line every results table carries names the CPU and its widest vector extension."""

from __future__ import annotations

import platform

from mnist_keras.environment import cpu_model, machine_description

X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse2 avx avx2 fma
processor\t: 1
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse2 avx avx2 fma
"""


def test_cpu_model_names_the_cpu_and_its_widest_vector_extension(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(X86_CPUINFO)
    assert cpu_model(cpuinfo) == "AMD EPYC 9B14, AVX2"
    cpuinfo.write_text(X86_CPUINFO.replace("avx2 fma", "avx2 avx512f avx512bw"))
    assert cpu_model(cpuinfo) == "AMD EPYC 9B14, AVX-512"
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm\nCPU implementer\t: 0x41\n")
    assert cpu_model(cpuinfo) in {"NEON", f"{platform.processor()}, NEON"}


def test_cpu_model_is_none_where_there_is_no_cpuinfo(tmp_path, monkeypatch):
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert cpu_model(tmp_path / "missing") is None
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\n")
    assert cpu_model(cpuinfo) is None


def test_machine_line_has_architecture_cores_and_system():
    line = machine_description()
    assert line.startswith(platform.machine()) and "CPU cores" in line and platform.system() in line
