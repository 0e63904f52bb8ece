"""The C# of the Windows role, compiled and run without Windows.

Every block of C# that a PowerShell script of the role (or of its molecule
scenario) gives to ``Add-Type`` or ``Add-CSharpType`` is found by parsing
the scripts with tree-sitter-powershell (``powershell_syntax.csharp_blocks``)
and compiled with Mono's C# compiler ``mcs`` (Debian package ``mono-mcs``)
the way Windows PowerShell 5.1 compiles it: as a library, for x86 and for
x64, with C# language version 5 (the .NET Framework 4.x ``csc`` that
CodeDom uses), warnings as errors, and the references, symbols and
``//NoWarn`` lines that Ansible's ``Add-CSharpType`` passes.

The SetupAPI class of ``dsr_win_loopback.ps1`` is then run on Mono against
a fake ``setupapi.dll``/``newdev.dll`` (a small C library built here with
``gcc``, mapped in with Mono's ``dllmap``) that logs every call with its
arguments and fails the calls a test names, with the error code it names.
That proves the call sequence, the flags, the structures as the native side
sees them on x64, and the error text; it does not prove what Windows does
with them (see docs/windows.md, "What is not verified without Windows").
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "src" / "ansible_collections" / "dsrprov" / "dsr"
ROLE = COLLECTION / "roles" / "dsr_realserver_windows"
LOOPBACK = COLLECTION / "plugins" / "modules" / "dsr_win_loopback.ps1"
SCANNED = (ROLE, COLLECTION / "plugins" / "modules", REPO / "molecule" / "windows")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import powershell_syntax  # noqa: E402

# Windows PowerShell 5.1 compiles Add-Type source with CodeDom's
# CSharpCodeProvider, which runs the .NET Framework 4.x csc.exe: C# 5.
LANGVERSION = "5"
PLATFORMS = ("x86", "x64")
# What Ansible.ModuleUtils.AddType (Windows PowerShell branch) references and
# ignores. It also references System.Management.Automation.dll, which Mono
# lacks; no block here uses it (a block that did would fail to compile here
# and say so).
REFERENCES = ("System.dll", "System.Core.dll")
ALWAYS_NOWARN = ("1610",)
_NOWARN = re.compile(r"//\s*NoWarn\s+-Name\s+(?P<name>[\w\d]*)(\s+-CLR\s+(?P<clr>Core|Framework))?")
_ASSEMBLY = re.compile(
    r"//\s*AssemblyReference\s+-(?P<kind>Name|Type)\s+(?P<name>[\w.]*)(\s+-CLR\s+(?P<clr>Core|Framework))?"
)


def _mcs() -> str:
    mcs = shutil.which("mcs")
    if mcs is None:
        pytest.fail("mcs (Mono C# compiler) not found: apt-get install --no-install-recommends mono-mcs")
    return mcs


def compile_command(
    block: powershell_syntax.CSharpBlock,
    platform: str,
    output: Path,
    sources: list[Path],
    target: str = "library",
) -> list[str]:
    """The mcs command line that compiles ``block`` as PowerShell 5.1 would."""
    nowarn = list(ALWAYS_NOWARN)
    references = list(REFERENCES)
    for match in _NOWARN.finditer(block.text):
        if match.group("clr") in (None, "Framework"):
            nowarn.append(match.group("name").removeprefix("CS"))
    for match in _ASSEMBLY.finditer(block.text):
        if match.group("clr") in (None, "Framework"):
            if match.group("kind") == "Type":
                pytest.fail(f"{block.path}:{block.line}: //AssemblyReference -Type is not resolved by this check")
            references.append(match.group("name"))
    command = [
        _mcs(),
        f"-target:{target}",
        f"-platform:{platform}",
        f"-langversion:{LANGVERSION}",
        "-warnaserror+",
        "-optimize+",
        f"-nowarn:{','.join(nowarn)}",
        f"-out:{output}",
    ]
    if block.command.lower() == "add-csharptype":
        # Add-CSharpType defines these; plain Add-Type defines none.
        command.append("-define:WINDOWS;" + ("X86" if platform == "x86" else "AMD64"))
    command += [f"-r:{r}" for r in references]
    return command + [str(s) for s in sources]


def compile_block(
    block: powershell_syntax.CSharpBlock,
    platform: str,
    workdir: Path,
    extra: tuple[str, ...] = (),
    target: str = "library",
) -> tuple[subprocess.CompletedProcess[str], Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "block.cs"
    source.write_text(block.text, encoding="utf-8")
    sources = [source]
    for i, text in enumerate(extra):
        path = workdir / f"extra{i}.cs"
        path.write_text(text, encoding="utf-8")
        sources.append(path)
    output = workdir / ("block.dll" if target == "library" else "block.exe")
    command = compile_command(block, platform, output, sources, target)
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    return result, output


def _blocks() -> list[powershell_syntax.CSharpBlock]:
    return powershell_syntax.csharp_blocks(SCANNED)


def _loopback_block() -> powershell_syntax.CSharpBlock:
    blocks = [b for b in _blocks() if Path(b.path).name == LOOPBACK.name]
    assert len(blocks) == 1, blocks
    return blocks[0]


# --------------------------------------------------------------------------
# Finding the blocks
# --------------------------------------------------------------------------


def test_static_csharp_every_add_type_block_is_read() -> None:
    blocks = _blocks()
    assert [b for b in blocks if b.problem] == []
    loopback = _loopback_block()
    assert loopback.command == "Add-CSharpType"
    assert "namespace Dsrprov" in loopback.text
    assert loopback.text.startswith("//NoWarn -Name CS0649")
    assert loopback.text.rstrip().endswith("}")


def test_static_csharp_finder_reports_what_it_cannot_read() -> None:
    """Negative test: a block the finder cannot read fails, never vanishes."""
    text = (
        "$code = @'\nclass A {}\n'@\n"
        "Add-Type -TypeDefinition $code\n"
        "Add-Type -AssemblyName System.Web\n"
        'Add-Type -TypeDefinition "class $name {}"\n'
        "Add-Type $unset\n"
        "& Add-CSharpType -AnsibleModule $module -References @'\nclass B {}\n'@\n"
    )
    blocks = powershell_syntax.csharp_blocks_in_text(text)
    assert [(b.line, b.text, bool(b.problem)) for b in blocks] == [
        (4, "class A {}", False),
        (6, "", True),
        (7, "", True),
        (8, "class B {}", False),
    ]


# --------------------------------------------------------------------------
# Compiling them as Windows PowerShell 5.1 does
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Case:
    block: powershell_syntax.CSharpBlock
    platform: str


def _cases() -> Iterator[_Case]:
    for block in _blocks():
        for platform in PLATFORMS:
            yield _Case(block, platform)


@pytest.mark.parametrize(
    "case",
    list(_cases()),
    ids=lambda c: f"{Path(c.block.path).name}:{c.block.line}-{c.platform}",
)
def test_static_csharp_compiles_like_powershell_51(case: _Case, tmp_path: Path) -> None:
    result, output = compile_block(case.block, case.platform, tmp_path)
    assert result.returncode == 0, (
        f"{case.block.path}:{case.block.line} ({case.platform}):\n{result.stdout}{result.stderr}"
    )
    assert output.is_file()


def _planted(replacement: tuple[str, str], tmp_path: Path, platform: str = "x64") -> str:
    block = _loopback_block()
    old, new = replacement
    assert old in block.text
    planted = powershell_syntax.CSharpBlock(block.path, block.line, block.command, block.text.replace(old, new, 1))
    result, _ = compile_block(planted, platform, tmp_path)
    assert result.returncode != 0, "the compile check accepted a planted fault"
    return result.stdout + result.stderr


@pytest.mark.parametrize("platform", PLATFORMS)
def test_static_csharp_check_catches_a_type_error(tmp_path: Path, platform: str) -> None:
    """Negative test: a planted type error in the real block is caught."""
    out = _planted(("rebootRequired = false;", 'rebootRequired = "no";'), tmp_path, platform)
    assert "CS0029" in out, out


def test_static_csharp_check_treats_warnings_as_errors(tmp_path: Path) -> None:
    out = _planted(("rebootRequired = false;", "rebootRequired = false; int unused = 1;"), tmp_path)
    assert "CS0219" in out, out


def test_static_csharp_check_refuses_newer_than_csharp_5(tmp_path: Path) -> None:
    # String interpolation is C# 6: csc of .NET Framework 4.x rejects it.
    out = _planted(("rebootRequired = false;", 'rebootRequired = $"{hardwareId}" == "";'), tmp_path)
    assert "CS1644" in out, out


# --------------------------------------------------------------------------
# Running the SetupAPI class against a fake setupapi.dll / newdev.dll
# --------------------------------------------------------------------------

FAKE_SETUPAPI_C = r"""
/* A stand-in for setupapi.dll and newdev.dll: logs each call and fails the
 * ones named in FAKE_SETUPAPI_FAIL ("Function=0xCODE" or
 * "Function:DIF=0xCODE", comma-separated), setting errno, which Mono
 * returns from Marshal.GetLastWin32Error. Devices that exist:
 * FAKE_SETUPAPI_DEVICES ("INSTANCE=HWID;..."); those without a driver key
 * (SPDRP_DRIVER): FAKE_SETUPAPI_NODRIVER ("INSTANCE;..."); the Flags that
 * SetupDiGetDeviceInstallParamsW returns: FAKE_SETUPAPI_INSTALL_FLAGS (hex). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint16_t wchar16;
typedef struct { uint32_t cbSize; uint8_t ClassGuid[16]; uint32_t DevInst; uintptr_t Reserved; } DEVINFO;
typedef struct { uint32_t cbSize; uint32_t InstallFunction; uint32_t Scope; uint32_t HwProfile; } REMOVEPARAMS;
/* SP_DEVINSTALL_PARAMS_W as setupapi.h declares it (x64: natural 8-byte packing). */
typedef struct {
    uint32_t cbSize; uint32_t Flags; uint32_t FlagsEx; void *hwndParent; void *InstallMsgHandler;
    void *InstallMsgHandlerContext; void *FileQueue; uintptr_t ClassInstallReserved; uint32_t Reserved;
    wchar16 DriverPath[260];
} DEVINSTALLPARAMS;

#define NEW_DEVINST 100u
static char devices[32][2][128];
static int ndevices = -1;

static void narrow(const wchar16 *w, char *out, size_t n) {
    size_t i = 0;
    if (!w) { snprintf(out, n, "(null)"); return; }
    for (; w[i] && i + 1 < n; i++) out[i] = (char)(w[i] < 128 ? w[i] : '?');
    out[i] = 0;
}

static void widen(const char *s, wchar16 *out) {
    size_t i = 0;
    for (; s[i]; i++) out[i] = (wchar16)s[i];
    out[i] = 0;
}

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void logf_(const char *fmt, ...) {
    const char *path = getenv("FAKE_SETUPAPI_LOG");
    FILE *f = path ? fopen(path, "a") : NULL;
    va_list ap;
    if (!f) return;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
}

static int fail(const char *name, long dif) {
    const char *spec = getenv("FAKE_SETUPAPI_FAIL");
    char key[128];
    const char *hit;
    if (!spec) return 0;
    if (dif >= 0) snprintf(key, sizeof key, "%s:0x%lx=", name, (unsigned long)dif);
    else snprintf(key, sizeof key, "%s=", name);
    hit = strstr(spec, key);
    if (!hit) return 0;
    errno = (int)(uint32_t)strtoul(hit + strlen(key), NULL, 16);
    logf_("  -> fails with 0x%08X", (uint32_t)errno);
    return 1;
}

static void load_devices(void) {
    const char *spec = getenv("FAKE_SETUPAPI_DEVICES");
    char buf[2048], *save = NULL, *item;
    if (ndevices >= 0) return;
    ndevices = 0;
    if (!spec) return;
    snprintf(buf, sizeof buf, "%s", spec);
    for (item = strtok_r(buf, ";", &save); item && ndevices < 32; item = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) continue;
        *eq = 0;
        snprintf(devices[ndevices][0], 128, "%s", item);
        snprintf(devices[ndevices][1], 128, "%s", eq + 1);
        ndevices++;
    }
}

void *SetupDiCreateDeviceInfoList(const void *guid, void *hwnd) {
    (void)guid; (void)hwnd;
    logf_("SetupDiCreateDeviceInfoList");
    if (fail("SetupDiCreateDeviceInfoList", -1)) return (void *)-1;
    return (void *)0x1000;
}

void *SetupDiGetClassDevsW(const void *guid, const wchar16 *enumerator, void *hwnd, uint32_t flags) {
    (void)guid; (void)enumerator; (void)hwnd;
    logf_("SetupDiGetClassDevsW flags=0x%x", flags);
    if (fail("SetupDiGetClassDevsW", -1)) return (void *)-1;
    return (void *)0x2000;
}

int SetupDiCreateDeviceInfoW(void *set, const wchar16 *name, const void *guid, const wchar16 *desc,
                             void *hwnd, uint32_t flags, DEVINFO *data) {
    char n[128];
    (void)set; (void)guid; (void)desc; (void)hwnd;
    narrow(name, n, sizeof n);
    logf_("SetupDiCreateDeviceInfoW name=%s flags=0x%x cbSize=%u", n, flags, data->cbSize);
    if (fail("SetupDiCreateDeviceInfoW", -1)) return 0;
    data->DevInst = NEW_DEVINST;
    return 1;
}

int SetupDiSetDeviceRegistryPropertyW(void *set, DEVINFO *data, uint32_t prop, const uint8_t *buf, uint32_t size) {
    char id[128];
    (void)set; (void)data;
    narrow((const wchar16 *)buf, id, sizeof id);
    logf_("SetupDiSetDeviceRegistryPropertyW prop=0x%x value=%s size=%u", prop, id, size);
    return fail("SetupDiSetDeviceRegistryPropertyW", -1) ? 0 : 1;
}

int SetupDiCallClassInstaller(uint32_t fn, void *set, DEVINFO *data) {
    (void)set;
    logf_("SetupDiCallClassInstaller fn=0x%x devinst=%u", fn, data->DevInst);
    return fail("SetupDiCallClassInstaller", fn) ? 0 : 1;
}

int SetupDiSetClassInstallParamsW(void *set, DEVINFO *data, const REMOVEPARAMS *params, uint32_t size) {
    (void)set;
    logf_("SetupDiSetClassInstallParamsW devinst=%u cbSize=%u fn=0x%x scope=0x%x hwprofile=%u size=%u",
          data->DevInst, params->cbSize, params->InstallFunction, params->Scope, params->HwProfile, size);
    return fail("SetupDiSetClassInstallParamsW", -1) ? 0 : 1;
}

int SetupDiDestroyDeviceInfoList(void *set) {
    logf_("SetupDiDestroyDeviceInfoList set=%p", set);
    return 1;
}

int SetupDiEnumDeviceInfo(void *set, uint32_t index, DEVINFO *data) {
    (void)set;
    load_devices();
    if ((int)index >= ndevices) { errno = 259; return 0; }
    data->DevInst = index;
    return 1;
}

int SetupDiGetDeviceInstallParamsW(void *set, DEVINFO *data, DEVINSTALLPARAMS *params) {
    const char *flags = getenv("FAKE_SETUPAPI_INSTALL_FLAGS");
    (void)set;
    logf_("SetupDiGetDeviceInstallParamsW devinst=%u cbSize=%u native=%u", data->DevInst, params->cbSize,
          (uint32_t)sizeof(DEVINSTALLPARAMS));
    if (params->cbSize != sizeof(DEVINSTALLPARAMS)) { errno = 0x6F8; return 0; } /* ERROR_INVALID_USER_BUFFER */
    if (fail("SetupDiGetDeviceInstallParamsW", -1)) return 0;
    params->Flags = flags && *flags ? (uint32_t)strtoul(flags, NULL, 16) : 0;
    return 1;
}

int SetupDiGetDeviceRegistryPropertyW(void *set, DEVINFO *data, uint32_t prop, uint32_t *type, uint8_t *buf,
                                      uint32_t size, uint32_t *needed) {
    const char *hwid;
    uint32_t bytes;
    (void)set;
    load_devices();
    if (data->DevInst >= (uint32_t)ndevices) { errno = 13; return 0; }
    if (prop == 0x9) { /* SPDRP_DRIVER */
        const char *nodriver = getenv("FAKE_SETUPAPI_NODRIVER");
        const char *key = "{4d36e972-e325-11ce-bfc1-08002be10318}\\0001";
        logf_("SetupDiGetDeviceRegistryPropertyW prop=0x9 id=%s", devices[data->DevInst][0]);
        if (fail("SetupDiGetDeviceRegistryPropertyW", 0x9)) return 0;
        if (nodriver && strstr(nodriver, devices[data->DevInst][0])) { errno = 13; return 0; }
        bytes = (uint32_t)(strlen(key) + 1) * 2;
        *needed = bytes;
        if (type) *type = 1; /* REG_SZ */
        if (size < bytes) { errno = 122; return 0; }
        widen(key, (wchar16 *)buf);
        return 1;
    }
    hwid = devices[data->DevInst][1];
    bytes = (uint32_t)(strlen(hwid) + 2) * 2;
    *needed = bytes;
    if (type) *type = 7; /* REG_MULTI_SZ */
    if (size < bytes) { errno = 122; return 0; }
    memset(buf, 0, bytes);
    widen(hwid, (wchar16 *)buf);
    return 1;
}

int SetupDiGetDeviceInstanceIdW(void *set, DEVINFO *data, wchar16 *buf, uint32_t size, uint32_t *needed) {
    const char *id;
    (void)set;
    load_devices();
    id = data->DevInst == NEW_DEVINST ? "ROOT\\NET\\0007" : devices[data->DevInst][0];
    *needed = (uint32_t)strlen(id) + 1;
    if (size < *needed) { errno = 122; return 0; }
    widen(id, buf);
    return 1;
}

int SetupDiOpenDeviceInfoW(void *set, const wchar16 *instance, void *hwnd, uint32_t flags, DEVINFO *data) {
    char id[128];
    int i;
    (void)set; (void)hwnd;
    narrow(instance, id, sizeof id);
    logf_("SetupDiOpenDeviceInfoW id=%s flags=0x%x", id, flags);
    load_devices();
    for (i = 0; i < ndevices; i++) {
        if (strcmp(devices[i][0], id) == 0) { data->DevInst = (uint32_t)i; return 1; }
    }
    errno = (int)0xE000020Bu; /* ERROR_NO_SUCH_DEVINST */
    return 0;
}

int UpdateDriverForPlugAndPlayDevicesW(void *hwnd, const wchar16 *hwid, const wchar16 *inf, uint32_t flags,
                                       int32_t *reboot) {
    char h[128], p[256];
    (void)hwnd;
    narrow(hwid, h, sizeof h);
    narrow(inf, p, sizeof p);
    logf_("UpdateDriverForPlugAndPlayDevicesW hwid=%s inf=%s flags=0x%x", h, p, flags);
    if (fail("UpdateDriverForPlugAndPlayDevicesW", -1)) return 0;
    if (reboot) *reboot = getenv("FAKE_SETUPAPI_REBOOT") ? 1 : 0;
    return 1;
}
"""

DRIVER_CS = r"""
using System;
using System.ComponentModel;
using System.Reflection;

public static class FakeSetupApiDriver
{
    public static int Main(string[] args)
    {
        try
        {
            switch (args[0])
            {
                case "install":
                    bool reboot;
                    string id = Dsrprov.LoopbackDevice.Install(args[1], args[2], out reboot);
                    Console.WriteLine("installed " + id + " reboot=" + reboot);
                    break;
                case "update":
                    Console.WriteLine("reboot=" + Dsrprov.LoopbackDevice.UpdateDriver(args[1], args[2]));
                    break;
                case "remove":
                    bool removeReboot;
                    bool removed = Dsrprov.LoopbackDevice.Remove(args[1], out removeReboot);
                    Console.WriteLine("removed=" + removed + " reboot=" + removeReboot);
                    break;
                case "hasdriver":
                    Console.WriteLine("hasdriver=" + Dsrprov.LoopbackDevice.HasDriver(args[1]));
                    break;
                case "size":
                    Console.WriteLine("devinstallparams=" + Dsrprov.LoopbackDevice.DevInstallParamsSize());
                    break;
                case "find":
                    Console.WriteLine("found=" + String.Join(",", Dsrprov.LoopbackDevice.Find(args[1])));
                    break;
                case "text":
                    // By reflection, so the driver also builds against a
                    // version without it (and its tests fail, not error).
                    int code = unchecked((int)Convert.ToUInt32(args[1], 16));
                    MethodInfo message = typeof(Dsrprov.LoopbackDevice).GetMethod("FailureMessage");
                    if (message == null)
                        Console.WriteLine("no FailureMessage");
                    else
                        Console.WriteLine(message.Invoke(null, new object[] { "Call", code }));
                    break;
                default:
                    return 2;
            }
            return 0;
        }
        catch (Win32Exception e)
        {
            string code = e.NativeErrorCode.ToString("X8");
            Console.WriteLine("exception " + e.GetType().Name + " 0x" + code + ": " + e.Message);
            return 1;
        }
    }
}
"""


@dataclass(frozen=True)
class FakeHost:
    exe: Path
    library: Path
    log: Path


@pytest.fixture(scope="module")
def fake_host(tmp_path_factory: pytest.TempPathFactory) -> FakeHost:
    gcc = shutil.which("gcc") or shutil.which("cc")
    mono = shutil.which("mono")
    if gcc is None or mono is None:
        pytest.fail("gcc and mono are needed (Debian packages gcc, and mono-runtime, which mono-mcs pulls in)")
    work = tmp_path_factory.mktemp("fake-setupapi")
    c_source = work / "fake_setupapi.c"
    c_source.write_text(FAKE_SETUPAPI_C, encoding="utf-8")
    library = work / "libfakesetupapi.so"
    built = subprocess.run(
        [gcc, "-shared", "-fPIC", "-Wall", "-Werror", "-o", str(library), str(c_source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    result, exe = compile_block(_loopback_block(), "x64", work / "exe", extra=(DRIVER_CS,), target="exe")
    assert result.returncode == 0, result.stdout + result.stderr
    # Mono resolves DllImport("setupapi.dll") / ("newdev.dll") through the
    # assembly's config file.
    exe.with_name(exe.name + ".config").write_text(
        "<configuration>\n"
        f'  <dllmap dll="setupapi.dll" target="{library}"/>\n'
        f'  <dllmap dll="newdev.dll" target="{library}"/>\n'
        "</configuration>\n",
        encoding="utf-8",
    )
    return FakeHost(exe=exe, library=library, log=work / "calls.log")


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str
    calls: list[str]


def _run(
    host: FakeHost, *args: str, fail: str = "", devices: str = "", nodriver: str = "", install_flags: str = ""
) -> Run:
    host.log.unlink(missing_ok=True)
    env = dict(
        os.environ,
        FAKE_SETUPAPI_LOG=str(host.log),
        FAKE_SETUPAPI_FAIL=fail,
        FAKE_SETUPAPI_DEVICES=devices,
        FAKE_SETUPAPI_NODRIVER=nodriver,
        FAKE_SETUPAPI_INSTALL_FLAGS=install_flags,
    )
    result = subprocess.run(
        [shutil.which("mono") or "mono", str(host.exe), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    calls = host.log.read_text(encoding="utf-8").splitlines() if host.log.exists() else []
    return Run(result.returncode, (result.stdout + result.stderr).strip(), calls)


def _names(run: Run) -> list[str]:
    return [c.split()[0] for c in run.calls if not c.startswith("  ->")]


def _call(run: Run, name: str) -> str:
    found = [c for c in run.calls if c.startswith(name + " ")]
    assert len(found) == 1, run.calls
    return found[0]


INF = r"C:\Windows\inf\netloop.inf"
REMOVE_PARAMS = "cbSize=8 fn=0x5 scope=0x1 hwprofile=0 size=16"


def test_loopback_install_call_sequence(fake_host: FakeHost) -> None:
    run = _run(fake_host, "install", "*MSLOOP", INF)
    assert run.returncode == 0, run
    assert run.output == r"installed ROOT\NET\0007 reboot=False"
    assert _names(run) == [
        "SetupDiCreateDeviceInfoList",
        "SetupDiCreateDeviceInfoW",
        "SetupDiSetDeviceRegistryPropertyW",
        "SetupDiCallClassInstaller",
        "UpdateDriverForPlugAndPlayDevicesW",
        "SetupDiDestroyDeviceInfoList",
    ]
    # SP_DEVINFO_DATA as the native side sees it on x64: 32 bytes.
    assert _call(run, "SetupDiCreateDeviceInfoW") == "SetupDiCreateDeviceInfoW name=Net flags=0x1 cbSize=32"
    # "*MSLOOP\0\0" in UTF-16: 18 bytes.
    assert _call(run, "SetupDiSetDeviceRegistryPropertyW").endswith("prop=0x1 value=*MSLOOP size=18")
    assert _call(run, "SetupDiCallClassInstaller") == "SetupDiCallClassInstaller fn=0x19 devinst=100"


def test_loopback_driver_install_is_noninteractive(fake_host: FakeHost) -> None:
    """Issue 13 point 3: INSTALLFLAG_FORCE | INSTALLFLAG_NONINTERACTIVE (0x5)."""
    for run in (
        _run(fake_host, "install", "*MSLOOP", INF),
        _run(fake_host, "update", "*MSLOOP", INF),
    ):
        assert run.returncode == 0, run
        assert _call(run, "UpdateDriverForPlugAndPlayDevicesW") == (
            rf"UpdateDriverForPlugAndPlayDevicesW hwid=*MSLOOP inf={INF} flags=0x5"
        )


def test_loopback_remove_sets_devcon_remove_params_first(fake_host: FakeHost) -> None:
    """Issue 13 point 4: SP_REMOVEDEVICE_PARAMS (DI_REMOVEDEVICE_GLOBAL) before DIF_REMOVE."""
    run = _run(fake_host, "remove", r"ROOT\NET\0003", devices=r"ROOT\NET\0003=*MSLOOP")
    assert run.returncode == 0, run
    assert run.output == "removed=True reboot=False"
    assert _names(run) == [
        "SetupDiCreateDeviceInfoList",
        "SetupDiOpenDeviceInfoW",
        "SetupDiSetClassInstallParamsW",
        "SetupDiCallClassInstaller",
        "SetupDiGetDeviceInstallParamsW",
        "SetupDiDestroyDeviceInfoList",
    ]
    assert _call(run, "SetupDiSetClassInstallParamsW").endswith(f"devinst=0 {REMOVE_PARAMS}")
    assert _call(run, "SetupDiCallClassInstaller") == "SetupDiCallClassInstaller fn=0x5 devinst=0"


def test_loopback_remove_of_a_missing_device_is_false(fake_host: FakeHost) -> None:
    run = _run(fake_host, "remove", r"ROOT\NET\0009", devices=r"ROOT\NET\0003=*MSLOOP")
    assert (run.returncode, run.output) == (0, "removed=False reboot=False")
    assert "SetupDiCallClassInstaller" not in _names(run)


def test_loopback_remove_params_refused_stops_before_dif_remove(fake_host: FakeHost) -> None:
    run = _run(
        fake_host,
        "remove",
        r"ROOT\NET\0003",
        devices=r"ROOT\NET\0003=*MSLOOP",
        fail="SetupDiSetClassInstallParamsW=0xE0000215",
    )
    assert run.returncode == 1
    assert "SetupDiCallClassInstaller" not in _names(run)
    assert "SetupDiSetClassInstallParamsW(DIF_REMOVE) failed: ERROR_NO_CLASSINSTALL_PARAMS" in run.output
    assert "(0xE0000215)" in run.output


def test_loopback_failed_install_removes_the_half_made_device(fake_host: FakeHost) -> None:
    run = _run(fake_host, "install", "*MSLOOP", INF, fail="UpdateDriverForPlugAndPlayDevicesW=0xE0000235")
    assert run.returncode == 1, run
    assert run.output.startswith("exception Win32Exception 0xE0000235: UpdateDriverForPlugAndPlayDevicesW(")
    assert "ERROR_IN_WOW64" in run.output and "(0xE0000235)" in run.output
    assert _names(run)[-4:] == [
        "SetupDiSetClassInstallParamsW",
        "SetupDiCallClassInstaller",
        "SetupDiGetDeviceInstallParamsW",
        "SetupDiDestroyDeviceInfoList",
    ]
    assert _call(run, "SetupDiSetClassInstallParamsW").endswith(f"devinst=100 {REMOVE_PARAMS}")


def test_loopback_failed_cleanup_is_reported_not_hidden(fake_host: FakeHost) -> None:
    run = _run(
        fake_host,
        "install",
        "*MSLOOP",
        INF,
        fail="UpdateDriverForPlugAndPlayDevicesW=0xE0000248,SetupDiCallClassInstaller:0x5=0xE0000232",
    )
    assert run.returncode == 1, run
    assert run.output.startswith("exception LoopbackCleanupException 0xE0000248: ")
    assert "ERROR_DEVICE_INSTALL_BLOCKED" in run.output
    assert r"removing the half-made device ROOT\NET\0007 failed too" in run.output
    assert "ERROR_CANT_REMOVE_DEVINST" in run.output and "(0xE0000232)" in run.output


def test_loopback_failure_before_registration_leaves_nothing_to_remove(fake_host: FakeHost) -> None:
    run = _run(fake_host, "install", "*MSLOOP", INF, fail="SetupDiCallClassInstaller:0x19=0xE000020E")
    assert run.returncode == 1
    assert "SetupDiCallClassInstaller(DIF_REGISTERDEVICE) failed: ERROR_DI_DO_DEFAULT" in run.output
    assert "SetupDiSetClassInstallParamsW" not in _names(run)


def test_loopback_find_matches_the_hardware_id(fake_host: FakeHost) -> None:
    run = _run(
        fake_host,
        "find",
        "*msloop",
        devices=r"PCI\VEN_8086&DEV_100E\3&1=PCI\VEN_8086&DEV_100E;ROOT\NET\0000=*MSLOOP;ROOT\NET\0001=*MSLOOP",
    )
    assert (run.returncode, run.output) == (0, r"found=ROOT\NET\0000,ROOT\NET\0001")


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("E000020B", "ERROR_NO_SUCH_DEVINST: no such device instance"),
        ("E000020E", "ERROR_DI_DO_DEFAULT: "),
        ("E0000235", "ERROR_IN_WOW64: a 32-bit process cannot install devices on 64-bit Windows"),
        ("E0000248", "ERROR_DEVICE_INSTALL_BLOCKED: "),
        ("E0000299", "SetupAPI error not listed by dsrprov"),
    ],
)
def test_loopback_setupapi_error_text(fake_host: FakeHost, code: str, words: str) -> None:
    """Issue 13 point 7: SetupAPI codes in words, the hex kept (not "Unknown error")."""
    run = _run(fake_host, "text", code)
    assert run.returncode == 0, run
    assert run.output.startswith(f"Call failed: {words}"), run.output
    assert run.output.endswith(f"(0x{code})")
    assert "Unknown error" not in run.output


def test_loopback_fake_host_can_fail(fake_host: FakeHost) -> None:
    """Negative test: the fake really fails a call, and the log shows it."""
    run = _run(fake_host, "install", "*MSLOOP", INF, fail="SetupDiCreateDeviceInfoList=0x00000005")
    assert run.returncode == 1
    assert run.calls[:2] == ["SetupDiCreateDeviceInfoList", "  -> fails with 0x00000005"]
    assert "SetupDiCreateDeviceInfoList failed" in run.output and "(0x00000005)" in run.output


# --------------------------------------------------------------------------
# Issue 26 point 4: reboot_required after DIF_REMOVE, as devcon reads it
# --------------------------------------------------------------------------

DEVICE = r"ROOT\NET\0003=*MSLOOP"


@pytest.mark.parametrize(
    ("flags", "reboot"),
    [("0", "False"), ("80", "True"), ("100", "True"), ("180", "True"), ("10", "False")],
)
def test_loopback_remove_reports_restart_from_the_install_params(fake_host: FakeHost, flags: str, reboot: str) -> None:
    """DI_NEEDRESTART (0x80) or DI_NEEDREBOOT (0x100) after DIF_REMOVE: reboot_required."""
    run = _run(fake_host, "remove", r"ROOT\NET\0003", devices=DEVICE, install_flags=flags)
    assert (run.returncode, run.output) == (0, f"removed=True reboot={reboot}"), run
    names = _names(run)
    assert names.index("SetupDiGetDeviceInstallParamsW") == names.index("SetupDiCallClassInstaller") + 1
    # cbSize as the native side sees it equals its own sizeof on x64: 584.
    assert _call(run, "SetupDiGetDeviceInstallParamsW") == (
        "SetupDiGetDeviceInstallParamsW devinst=0 cbSize=584 native=584"
    )


def test_loopback_remove_params_read_failure_is_devcon_no_reboot(fake_host: FakeHost) -> None:
    """devcon: a failed read after a successful DIF_REMOVE counts as no restart."""
    run = _run(
        fake_host,
        "remove",
        r"ROOT\NET\0003",
        devices=DEVICE,
        install_flags="100",
        fail="SetupDiGetDeviceInstallParamsW=0x0000000D",
    )
    assert (run.returncode, run.output) == (0, "removed=True reboot=False"), run


def test_loopback_devinstall_params_size_guard_on_x64(fake_host: FakeHost) -> None:
    run = _run(fake_host, "size")
    assert (run.returncode, run.output) == (0, "devinstallparams=584"), run


# Both layouts of the C# structs, computed from the C# source the way the
# marshaller lays out LayoutKind.Sequential (each member at a multiple of
# min(its alignment, Pack), the size a multiple of the largest), for x86
# (4-byte pointers) and x64 (8-byte pointers). setupapi.h packs to 1 byte on
# x86 and 8 on x64; the C# structs carry no Pack, so the marshaller packs
# them naturally: the sizes must agree with setupapi.h's on both.
_FIELD = re.compile(
    r"(?:\[MarshalAs\(UnmanagedType\.ByValTStr,\s*SizeConst\s*=\s*(?P<chars>\d+)\)\]\s*)?"
    r"public\s+(?P<type>\w+)\s+(?P<name>\w+);"
)
_STRUCT = re.compile(r"\[StructLayout\((?P<layout>[^)]*)\)\]\s*public struct (?P<name>\w+)\s*\{(?P<body>[^}]*)\}")
# setupapi.h's sizes (x86 pack 1, x64 pack 8), from its declarations:
# SP_DEVINFO_DATA {DWORD; GUID; DWORD; ULONG_PTR}, SP_CLASSINSTALL_HEADER
# {DWORD; DI_FUNCTION}, SP_REMOVEDEVICE_PARAMS {header; DWORD; DWORD},
# SP_DEVINSTALL_PARAMS_W {3 DWORD; 4 pointers; ULONG_PTR; DWORD; WCHAR[260]}.
SETUPAPI_SIZES = {
    "SP_DEVINFO_DATA": {"x86": 28, "x64": 32},
    "SP_CLASSINSTALL_HEADER": {"x86": 8, "x64": 8},
    "SP_REMOVEDEVICE_PARAMS": {"x86": 16, "x64": 16},
    "SP_DEVINSTALL_PARAMS_W": {"x86": 556, "x64": 584},
}


def _native_layout(fields: list[tuple[int, int]], pack: int) -> int:
    """Size of a C struct of (size, alignment) members under #pragma pack(pack)."""
    offset = 0
    largest = 1
    for size, align in fields:
        align = min(align, pack)
        largest = max(largest, align)
        offset = (offset + align - 1) // align * align + size
    return (offset + largest - 1) // largest * largest


def _csharp_struct_sizes(text: str, pointer: int) -> dict[str, int]:
    sizes: dict[str, tuple[int, int]] = {}
    for match in _STRUCT.finditer(text):
        assert "Pack" not in match.group("layout"), match.group(0)
        fields: list[tuple[int, int]] = []
        for field in _FIELD.finditer(match.group("body")):
            kind = field.group("type")
            if field.group("chars"):
                assert "CharSet.Unicode" in match.group("layout"), match.group("name")
                fields.append((2 * int(field.group("chars")), 2))
            elif kind in ("uint", "int"):
                fields.append((4, 4))
            elif kind in ("IntPtr", "UIntPtr"):
                fields.append((pointer, pointer))
            elif kind == "Guid":
                fields.append((16, 4))
            elif kind in sizes:
                fields.append(sizes[kind])
            else:
                raise AssertionError(f"{match.group('name')}.{field.group('name')}: type {kind} not known here")
        sizes[match.group("name")] = (_native_layout(fields, 8), max(a for _, a in fields))
    return {name: size for name, (size, _) in sizes.items()}


@pytest.mark.parametrize(("platform", "pointer", "pack"), [("x86", 4, 1), ("x64", 8, 8)])
def test_static_csharp_struct_sizes_match_setupapi_h(platform: str, pointer: int, pack: int) -> None:
    """Every SetupAPI struct of the module, x86 and x64, against setupapi.h."""
    text = _loopback_block().text
    sizes = _csharp_struct_sizes(text, pointer)
    assert set(sizes) == set(SETUPAPI_SIZES), sizes
    for name, expected in SETUPAPI_SIZES.items():
        assert sizes[name] == expected[platform], (name, platform, sizes[name])
    # The run-time guard in the module names the same numbers.
    assert f"DevInstallParamsSize{platform.upper()} = {SETUPAPI_SIZES['SP_DEVINSTALL_PARAMS_W'][platform]};" in text
    # setupapi.h's own layout (pack 1 on x86, 8 on x64) gives the same size.
    devinstall = [(4, 4)] * 3 + [(pointer, pointer)] * 5 + [(4, 4), (520, 2)]
    assert _native_layout(devinstall, pack) == SETUPAPI_SIZES["SP_DEVINSTALL_PARAMS_W"][platform]


def test_static_csharp_struct_size_check_catches_a_wrong_member() -> None:
    """Negative test: a DWORD where setupapi.h has a ULONG_PTR, or a short path, is caught."""
    text = _loopback_block().text.replace(
        "public UIntPtr ClassInstallReserved;", "public uint ClassInstallReserved;", 1
    )
    assert _csharp_struct_sizes(text, 8)["SP_DEVINSTALL_PARAMS_W"] != 584
    short = _loopback_block().text.replace("SizeConst = 260", "SizeConst = 256", 1)
    assert _csharp_struct_sizes(short, 4)["SP_DEVINSTALL_PARAMS_W"] != 556


# --------------------------------------------------------------------------
# Issue 26 point 5: "no driver" only from SetupAPI's answer, never a failure
# --------------------------------------------------------------------------


def test_loopback_has_driver_reads_the_driver_key(fake_host: FakeHost) -> None:
    devices = r"ROOT\NET\0000=*MSLOOP;ROOT\NET\0001=*MSLOOP"
    with_driver = _run(fake_host, "hasdriver", r"ROOT\NET\0000", devices=devices, nodriver=r"ROOT\NET\0001")
    assert (with_driver.returncode, with_driver.output) == (0, "hasdriver=True"), with_driver
    without = _run(fake_host, "hasdriver", r"ROOT\NET\0001", devices=devices, nodriver=r"ROOT\NET\0001")
    assert (without.returncode, without.output) == (0, "hasdriver=False"), without
    assert "SetupDiGetDeviceRegistryPropertyW prop=0x9 id=ROOT\\NET\\0001" in without.calls


def test_loopback_has_driver_failure_is_an_error_not_no_driver(fake_host: FakeHost) -> None:
    run = _run(
        fake_host,
        "hasdriver",
        r"ROOT\NET\0000",
        devices=DEVICE.replace("0003", "0000"),
        fail="SetupDiGetDeviceRegistryPropertyW:0x9=0x00000005",
    )
    assert run.returncode == 1, run
    assert "SetupDiGetDeviceRegistryPropertyW(SPDRP_DRIVER" in run.output and "(0x00000005)" in run.output
