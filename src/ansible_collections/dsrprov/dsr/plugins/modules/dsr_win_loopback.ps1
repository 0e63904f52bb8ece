#!powershell

# dsr_win_loopback: the Microsoft KM-TEST Loopback Adapter, without devcon.exe
# and without internet. See dsr_win_loopback.py for the documentation.
#
# The install is what devcon's "install <inf> <hwid>" does internally, through
# SetupAPI and newdev, called with P/Invoke (signatures and constants as
# documented on learn.microsoft.com, setupapi.h and newdev.h):
#   SetupDiCreateDeviceInfoList(&GUID_DEVCLASS_NET, NULL)
#     https://learn.microsoft.com/windows/win32/api/setupapi/nf-setupapi-setupdicreatedeviceinfolist
#   SetupDiCreateDeviceInfoW(set, "Net", &GUID_DEVCLASS_NET, NULL, NULL, DICD_GENERATE_ID, &data)
#     https://learn.microsoft.com/windows/win32/api/setupapi/nf-setupapi-setupdicreatedeviceinfow
#     ("a root-enumerated device ID ... can be used only if DICD_GENERATE_ID")
#   SetupDiSetDeviceRegistryPropertyW(set, &data, SPDRP_HARDWAREID, "*MSLOOP\0\0", size)
#   SetupDiCallClassInstaller(DIF_REGISTERDEVICE, set, &data)
#   UpdateDriverForPlugAndPlayDevicesW(NULL, "*MSLOOP", "%windir%\inf\netloop.inf",
#                                      INSTALLFLAG_FORCE | INSTALLFLAG_NONINTERACTIVE, &reboot)
#     https://learn.microsoft.com/windows/win32/api/newdev/nf-newdev-updatedriverforplugandplaydevicesw
#     (INSTALLFLAG_NONINTERACTIVE: "Set this flag only if the function will be
#     called from a component (such as a service) that cannot display UI";
#     a WinRM session is one. With it, a driver install that wants UI fails
#     instead of waiting for a click nobody can give.)
# Removal, on any failure after the device was registered and for
# state=absent, is devcon's remove path (Windows-driver-samples,
# setup/devcon): SetupDiSetClassInstallParamsW(set, &data,
# SP_REMOVEDEVICE_PARAMS{ {sizeof(SP_CLASSINSTALL_HEADER), DIF_REMOVE},
# DI_REMOVEDEVICE_GLOBAL, 0 }, sizeof(SP_REMOVEDEVICE_PARAMS)), then
# SetupDiCallClassInstaller(DIF_REMOVE) (the default handler is
# SetupDiRemoveDevice, which deletes every trace of the instance), then, as
# devcon's RemoveCallback does, SetupDiGetDeviceInstallParamsW: Windows asks
# for a restart with DI_NEEDRESTART (0x80) or DI_NEEDREBOOT (0x100) in Flags.
#   https://learn.microsoft.com/windows/win32/api/setupapi/nf-setupapi-setupdigetdeviceinstallparamsw
#   https://learn.microsoft.com/windows/win32/api/setupapi/ns-setupapi-sp_devinstall_params_w
# SP_DEVINSTALL_PARAMS_W: 3 DWORDs, 4 pointer-sized members (HWND, callback,
# context, HSPFILEQ), ULONG_PTR, DWORD, WCHAR[MAX_PATH=260]. setupapi.h packs
# its structures to 1 byte on 32-bit Windows and 8 on 64-bit: 556 bytes on
# x86 (no member is wider than 4 bytes there, so no padding either way) and
# 584 on x64 (4 bytes of padding before hwndParent, 4 at the end).
# DevInstallParamsSize checks that at run time; tests/unit/test_windows_csharp.py
# computes both layouts from this source.
# A device is "without driver" when SPDRP_DRIVER (0x9, the driver key) is
# missing: SetupDiGetDeviceRegistryPropertyW then fails with
# ERROR_INVALID_DATA (13), as its documentation says for a missing property.
# Constants: DICD_GENERATE_ID 0x1, SPDRP_HARDWAREID 0x1, DIF_REMOVE 0x5,
# DIF_REGISTERDEVICE 0x19, DIGCF_PRESENT 0x2, DI_REMOVEDEVICE_GLOBAL 0x1,
# INSTALLFLAG_FORCE 0x1, INSTALLFLAG_NONINTERACTIVE 0x4 (setupapi.h, newdev.h).
# Net class GUID {4d36e972-e325-11ce-bfc1-08002be10318} (devguid.h).
# SetupAPI's own error codes (0xE0000000 | n, setupapi.h) have no system
# message text, so Win32Exception says "Unknown error": ErrorText names them.

#AnsibleRequires -CSharpUtil Ansible.Basic
#Requires -Module Ansible.ModuleUtils.AddType

$spec = @{
    options = @{
        state = @{ type = 'str'; choices = @('present', 'absent'); default = 'present' }
        name = @{ type = 'str'; default = 'loopback' }
        inf_path = @{ type = 'str'; default = '' }
        registry_key = @{ type = 'str'; default = 'HKLM:\SOFTWARE\dsrprov' }
        wait_seconds = @{ type = 'int'; default = 60 }
        interface_guid = @{ type = 'str'; default = '' }
        vips = @{ type = 'list'; elements = 'str'; default = @() }
    }
    supports_check_mode = $true
}

$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)

$state = $module.Params.state
$name = $module.Params.name
$infPath = $module.Params.inf_path
if (-not $infPath) {
    $infPath = Join-Path -Path $env:windir -ChildPath 'inf\netloop.inf'
}
$regKey = $module.Params.registry_key
$hardwareId = '*MSLOOP'

Add-CSharpType -AnsibleModule $module -References @'
//NoWarn -Name CS0649
using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.Runtime.InteropServices;
using System.Text;

namespace Dsrprov
{
    public static class LoopbackDevice
    {
        private const uint DICD_GENERATE_ID = 0x00000001;
        private const uint SPDRP_HARDWAREID = 0x00000001;
        private const uint DIF_REMOVE = 0x00000005;
        private const uint DIF_REGISTERDEVICE = 0x00000019;
        private const uint DIGCF_PRESENT = 0x00000002;
        private const uint DI_REMOVEDEVICE_GLOBAL = 0x00000001;
        private const uint INSTALLFLAG_FORCE = 0x00000001;
        private const uint INSTALLFLAG_NONINTERACTIVE = 0x00000004;
        private const uint SPDRP_DRIVER = 0x00000009;
        private const uint DI_NEEDRESTART = 0x00000080;
        private const uint DI_NEEDREBOOT = 0x00000100;
        private const int ERROR_INVALID_DATA = 13;
        private const int ERROR_INSUFFICIENT_BUFFER = 122;
        // sizeof(SP_DEVINSTALL_PARAMS_W) in setupapi.h: x86 (pack 1), x64 (pack 8).
        public const int DevInstallParamsSizeX86 = 556;
        public const int DevInstallParamsSizeX64 = 584;
        // Every driver install runs over WinRM, where no UI can be shown.
        public const uint InstallFlags = INSTALLFLAG_FORCE | INSTALLFLAG_NONINTERACTIVE;
        private const int ERROR_NO_MORE_ITEMS = 259;
        private const int ERROR_NO_SUCH_DEVINST = unchecked((int)0xE000020B);

        // SetupAPI error codes (setupapi.h: APPLICATION_ERROR_MASK |
        // ERROR_SEVERITY_ERROR | n). The system has no message text for them.
        private static readonly Dictionary<int, string> SetupApiErrors = new Dictionary<int, string>
        {
            { unchecked((int)0xE0000003), "ERROR_GENERAL_SYNTAX: the INF file has a syntax error" },
            { unchecked((int)0xE0000100), "ERROR_WRONG_INF_STYLE: the INF file is not of the expected style" },
            { unchecked((int)0xE0000101), "ERROR_SECTION_NOT_FOUND: a section is missing from the INF file" },
            { unchecked((int)0xE0000102), "ERROR_LINE_NOT_FOUND: a line is missing from the INF file" },
            { unchecked((int)0xE0000200), "ERROR_NO_ASSOCIATED_CLASS: the INF file names no device setup class" },
            { unchecked((int)0xE0000201), "ERROR_CLASS_MISMATCH: the INF file is for another device setup class" },
            { unchecked((int)0xE0000203), "ERROR_NO_DRIVER_SELECTED: no driver was selected for the device" },
            { unchecked((int)0xE0000205), "ERROR_INVALID_DEVINST_NAME: the device instance name is invalid" },
            { unchecked((int)0xE0000206), "ERROR_INVALID_CLASS: the device setup class is invalid" },
            { unchecked((int)0xE0000207), "ERROR_DEVINST_ALREADY_EXISTS: a device instance with that name already exists" },
            { unchecked((int)0xE0000208), "ERROR_DEVINFO_NOT_REGISTERED: the device is not registered" },
            { unchecked((int)0xE0000209), "ERROR_INVALID_REG_PROPERTY: the device registry property is invalid" },
            { unchecked((int)0xE000020A), "ERROR_NO_INF: the INF file was not found" },
            { unchecked((int)0xE000020B), "ERROR_NO_SUCH_DEVINST: no such device instance (the device does not exist, or no device has that hardware id)" },
            { unchecked((int)0xE000020D), "ERROR_INVALID_CLASS_INSTALLER: the class installer is invalid" },
            { unchecked((int)0xE000020E), "ERROR_DI_DO_DEFAULT: the class installer asked for the default action, which was not carried out" },
            { unchecked((int)0xE0000214), "ERROR_DI_BAD_PATH: the driver path is invalid" },
            { unchecked((int)0xE0000215), "ERROR_NO_CLASSINSTALL_PARAMS: no class install parameters were set for the request" },
            { unchecked((int)0xE0000219), "ERROR_NO_ASSOCIATED_SERVICE: the driver installs no service" },
            { unchecked((int)0xE0000228), "ERROR_NO_COMPAT_DRIVERS: the INF file has no driver for this hardware id" },
            { unchecked((int)0xE000022B), "ERROR_DI_DONT_INSTALL: a class installer or co-installer refused the install" },
            { unchecked((int)0xE000022F), "ERROR_NO_CATALOG_FOR_OEM_INF: the INF file has no signed catalog" },
            { unchecked((int)0xE0000232), "ERROR_CANT_REMOVE_DEVINST: the device cannot be removed now (a reboot may be needed)" },
            { unchecked((int)0xE0000235), "ERROR_IN_WOW64: a 32-bit process cannot install devices on 64-bit Windows (use the 64-bit PowerShell)" },
            { unchecked((int)0xE0000239), "ERROR_UNKNOWN_EXCEPTION: the class installer raised an exception" },
            { unchecked((int)0xE000023A), "ERROR_PNP_REGISTRY_ERROR: the Plug and Play registry is inconsistent" },
            { unchecked((int)0xE0000246), "ERROR_DEVICE_INSTALLER_NOT_READY: the device installer is busy (another install is running); try again" },
            { unchecked((int)0xE0000247), "ERROR_DRIVER_STORE_ADD_FAILED: the driver could not be added to the driver store" },
            { unchecked((int)0xE0000248), "ERROR_DEVICE_INSTALL_BLOCKED: device installation is blocked by policy" },
            { unchecked((int)0xE0000249), "ERROR_DRIVER_INSTALL_BLOCKED: driver installation is blocked by policy" },
            { unchecked((int)0xE000024B), "ERROR_FILE_HASH_NOT_IN_CATALOG: a driver file does not match its signed catalog" },
            { unchecked((int)0xE0001000), "ERROR_NOT_INSTALLED: the device or driver is not installed" },
        };
        private static readonly IntPtr INVALID_HANDLE_VALUE = new IntPtr(-1);
        private static readonly Guid NetClassGuid = new Guid("4d36e972-e325-11ce-bfc1-08002be10318");

        // Public so the compiler does not warn (CS0649) about fields that
        // only the marshaller writes; Add-CSharpType fails on warnings.
        [StructLayout(LayoutKind.Sequential)]
        public struct SP_DEVINFO_DATA
        {
            public uint cbSize;
            public Guid ClassGuid;
            public uint DevInst;
            public IntPtr Reserved;
        }

        // setupapi.h: SP_CLASSINSTALL_HEADER { DWORD cbSize; DI_FUNCTION
        // InstallFunction; } and SP_REMOVEDEVICE_PARAMS { header; DWORD Scope;
        // DWORD HwProfile; }: 8 and 16 bytes on x86 and x64 alike.
        [StructLayout(LayoutKind.Sequential)]
        public struct SP_CLASSINSTALL_HEADER
        {
            public uint cbSize;
            public uint InstallFunction;
        }

        [StructLayout(LayoutKind.Sequential)]
        public struct SP_REMOVEDEVICE_PARAMS
        {
            public SP_CLASSINSTALL_HEADER ClassInstallHeader;
            public uint Scope;
            public uint HwProfile;
        }

        // SP_DEVINSTALL_PARAMS_W (setupapi.h); sizes above.
        [StructLayout(LayoutKind.Sequential, CharSet = CharSet.Unicode)]
        public struct SP_DEVINSTALL_PARAMS_W
        {
            public uint cbSize;
            public uint Flags;
            public uint FlagsEx;
            public IntPtr hwndParent;
            public IntPtr InstallMsgHandler;
            public IntPtr InstallMsgHandlerContext;
            public IntPtr FileQueue;
            public UIntPtr ClassInstallReserved;
            public uint Reserved;
            [MarshalAs(UnmanagedType.ByValTStr, SizeConst = 260)]
            public string DriverPath;
        }

        [DllImport("setupapi.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        private static extern bool SetupDiGetDeviceInstallParamsW(IntPtr DeviceInfoSet,
            ref SP_DEVINFO_DATA DeviceInfoData, ref SP_DEVINSTALL_PARAMS_W DeviceInstallParams);

        [DllImport("setupapi.dll", SetLastError = true)]
        private static extern IntPtr SetupDiCreateDeviceInfoList(ref Guid ClassGuid, IntPtr hwndParent);

        [DllImport("setupapi.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        private static extern bool SetupDiCreateDeviceInfoW(IntPtr DeviceInfoSet, string DeviceName,
            ref Guid ClassGuid, string DeviceDescription, IntPtr hwndParent, uint CreationFlags,
            ref SP_DEVINFO_DATA DeviceInfoData);

        [DllImport("setupapi.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        private static extern bool SetupDiSetDeviceRegistryPropertyW(IntPtr DeviceInfoSet,
            ref SP_DEVINFO_DATA DeviceInfoData, uint Property, byte[] PropertyBuffer, uint PropertyBufferSize);

        [DllImport("setupapi.dll", SetLastError = true)]
        private static extern bool SetupDiCallClassInstaller(uint InstallFunction, IntPtr DeviceInfoSet,
            ref SP_DEVINFO_DATA DeviceInfoData);

        [DllImport("setupapi.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        private static extern bool SetupDiSetClassInstallParamsW(IntPtr DeviceInfoSet,
            ref SP_DEVINFO_DATA DeviceInfoData, ref SP_REMOVEDEVICE_PARAMS ClassInstallParams,
            uint ClassInstallParamsSize);

        [DllImport("setupapi.dll", SetLastError = true)]
        private static extern bool SetupDiDestroyDeviceInfoList(IntPtr DeviceInfoSet);

        [DllImport("setupapi.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        private static extern IntPtr SetupDiGetClassDevsW(ref Guid ClassGuid, string Enumerator,
            IntPtr hwndParent, uint Flags);

        [DllImport("setupapi.dll", SetLastError = true)]
        private static extern bool SetupDiEnumDeviceInfo(IntPtr DeviceInfoSet, uint MemberIndex,
            ref SP_DEVINFO_DATA DeviceInfoData);

        [DllImport("setupapi.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        private static extern bool SetupDiGetDeviceRegistryPropertyW(IntPtr DeviceInfoSet,
            ref SP_DEVINFO_DATA DeviceInfoData, uint Property, out uint PropertyRegDataType,
            byte[] PropertyBuffer, uint PropertyBufferSize, out uint RequiredSize);

        [DllImport("setupapi.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        private static extern bool SetupDiGetDeviceInstanceIdW(IntPtr DeviceInfoSet,
            ref SP_DEVINFO_DATA DeviceInfoData, StringBuilder DeviceInstanceId, uint DeviceInstanceIdSize,
            out uint RequiredSize);

        [DllImport("setupapi.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        private static extern bool SetupDiOpenDeviceInfoW(IntPtr DeviceInfoSet, string DeviceInstanceId,
            IntPtr hwndParent, uint OpenFlags, ref SP_DEVINFO_DATA DeviceInfoData);

        [DllImport("newdev.dll", CharSet = CharSet.Unicode, SetLastError = true)]
        private static extern bool UpdateDriverForPlugAndPlayDevicesW(IntPtr hwndParent, string HardwareId,
            string FullInfPath, uint InstallFlags, out bool bRebootRequired);

        // Words for an error code: SetupAPI's own codes by name and meaning,
        // any other through the system's message table.
        public static string ErrorText(int code)
        {
            string text;
            if (SetupApiErrors.TryGetValue(code, out text))
                return text;
            if ((code & unchecked((int)0xE0000000)) == unchecked((int)0xE0000000))
                return "SetupAPI error not listed by dsrprov (look it up in setupapi.h)";
            return new Win32Exception(code).Message;
        }

        public static string FailureMessage(string call, int code)
        {
            return String.Format("{0} failed: {1} (0x{2:X8})", call, ErrorText(code), code);
        }

        private static Win32Exception Failure(string call)
        {
            int code = Marshal.GetLastWin32Error();
            return new Win32Exception(code, FailureMessage(call, code));
        }

        // The size the marshaller gives SP_DEVINSTALL_PARAMS_W, checked
        // against setupapi.h for this process's bitness: a wrong cbSize makes
        // SetupDiGetDeviceInstallParamsW fail with ERROR_INVALID_USER_BUFFER.
        public static int DevInstallParamsSize()
        {
            int size = Marshal.SizeOf(typeof(SP_DEVINSTALL_PARAMS_W));
            int expected = IntPtr.Size == 4 ? DevInstallParamsSizeX86 : DevInstallParamsSizeX64;
            if (size != expected)
                throw new InvalidOperationException(String.Format(
                    "SP_DEVINSTALL_PARAMS_W marshals to {0} bytes, setupapi.h says {1}", size, expected));
            return size;
        }

        // An empty device information set of the Net class; the caller
        // destroys it.
        private static IntPtr NewNetSet()
        {
            Guid cls = NetClassGuid;
            IntPtr set = SetupDiCreateDeviceInfoList(ref cls, IntPtr.Zero);
            if (set == INVALID_HANDLE_VALUE)
                throw Failure("SetupDiCreateDeviceInfoList");
            return set;
        }

        // Open one device into the set: false when no device has that
        // instance id, any other failure thrown.
        private static bool OpenDevice(IntPtr set, string instanceId, ref SP_DEVINFO_DATA data)
        {
            if (SetupDiOpenDeviceInfoW(set, instanceId, IntPtr.Zero, 0, ref data))
                return true;
            if (Marshal.GetLastWin32Error() == ERROR_NO_SUCH_DEVINST)
                return false;
            throw Failure("SetupDiOpenDeviceInfoW(" + instanceId + ")");
        }

        private static SP_DEVINFO_DATA NewData()
        {
            SP_DEVINFO_DATA data = new SP_DEVINFO_DATA();
            data.cbSize = (uint)Marshal.SizeOf(typeof(SP_DEVINFO_DATA));
            return data;
        }

        private static string InstanceId(IntPtr set, ref SP_DEVINFO_DATA data)
        {
            StringBuilder sb = new StringBuilder(512);
            uint needed;
            if (!SetupDiGetDeviceInstanceIdW(set, ref data, sb, (uint)sb.Capacity, out needed))
                throw Failure("SetupDiGetDeviceInstanceIdW");
            return sb.ToString();
        }

        private static string[] HardwareIds(IntPtr set, ref SP_DEVINFO_DATA data)
        {
            uint regType;
            uint needed;
            byte[] buffer = new byte[1024];
            if (!SetupDiGetDeviceRegistryPropertyW(set, ref data, SPDRP_HARDWAREID, out regType, buffer,
                    (uint)buffer.Length, out needed))
            {
                if (needed > buffer.Length)
                {
                    buffer = new byte[needed];
                    if (!SetupDiGetDeviceRegistryPropertyW(set, ref data, SPDRP_HARDWAREID, out regType,
                            buffer, (uint)buffer.Length, out needed))
                        return new string[0];
                }
                else
                {
                    return new string[0];
                }
            }
            // REG_MULTI_SZ: NUL-separated, double-NUL-terminated UTF-16.
            string all = Encoding.Unicode.GetString(buffer, 0, (int)Math.Min(needed, (uint)buffer.Length));
            return all.Split(new char[] { '\0' }, StringSplitOptions.RemoveEmptyEntries);
        }

        // Instance ids of the present Net-class devices whose hardware ids
        // include hardwareId (case-insensitive). Finds a loopback even when its
        // driver is missing, so a re-run never adds a second device.
        public static string[] Find(string hardwareId)
        {
            Guid cls = NetClassGuid;
            IntPtr set = SetupDiGetClassDevsW(ref cls, null, IntPtr.Zero, DIGCF_PRESENT);
            if (set == INVALID_HANDLE_VALUE)
                throw Failure("SetupDiGetClassDevsW");
            List<string> found = new List<string>();
            try
            {
                for (uint i = 0; ; i++)
                {
                    SP_DEVINFO_DATA data = NewData();
                    if (!SetupDiEnumDeviceInfo(set, i, ref data))
                    {
                        if (Marshal.GetLastWin32Error() == ERROR_NO_MORE_ITEMS)
                            break;
                        throw Failure("SetupDiEnumDeviceInfo");
                    }
                    foreach (string id in HardwareIds(set, ref data))
                    {
                        if (String.Equals(id, hardwareId, StringComparison.OrdinalIgnoreCase))
                        {
                            found.Add(InstanceId(set, ref data));
                            break;
                        }
                    }
                }
            }
            finally
            {
                SetupDiDestroyDeviceInfoList(set);
            }
            return found.ToArray();
        }

        // Remove one device of the set the way devcon does: the remove
        // parameters (global scope: every hardware profile) first, then
        // DIF_REMOVE, then the install params: true when Windows asks for a
        // restart (DI_NEEDRESTART | DI_NEEDREBOOT). Like devcon, a failed
        // read of the params after a successful removal means no restart.
        private static bool RemoveElement(IntPtr set, ref SP_DEVINFO_DATA data)
        {
            SP_REMOVEDEVICE_PARAMS parameters = new SP_REMOVEDEVICE_PARAMS();
            parameters.ClassInstallHeader.cbSize = (uint)Marshal.SizeOf(typeof(SP_CLASSINSTALL_HEADER));
            parameters.ClassInstallHeader.InstallFunction = DIF_REMOVE;
            parameters.Scope = DI_REMOVEDEVICE_GLOBAL;
            parameters.HwProfile = 0;
            if (!SetupDiSetClassInstallParamsW(set, ref data, ref parameters,
                    (uint)Marshal.SizeOf(typeof(SP_REMOVEDEVICE_PARAMS))))
                throw Failure("SetupDiSetClassInstallParamsW(DIF_REMOVE)");
            if (!SetupDiCallClassInstaller(DIF_REMOVE, set, ref data))
                throw Failure("SetupDiCallClassInstaller(DIF_REMOVE)");
            SP_DEVINSTALL_PARAMS_W installParams = new SP_DEVINSTALL_PARAMS_W();
            installParams.cbSize = (uint)DevInstallParamsSize();
            if (!SetupDiGetDeviceInstallParamsW(set, ref data, ref installParams))
                return false;
            return (installParams.Flags & (DI_NEEDRESTART | DI_NEEDREBOOT)) != 0;
        }

        // Create the root-enumerated device and install infPath for it.
        // Returns the new device instance id; rebootRequired as newdev says.
        public static string Install(string hardwareId, string infPath, out bool rebootRequired)
        {
            rebootRequired = false;
            Guid cls = NetClassGuid;
            IntPtr set = SetupDiCreateDeviceInfoList(ref cls, IntPtr.Zero);
            if (set == INVALID_HANDLE_VALUE)
                throw Failure("SetupDiCreateDeviceInfoList");
            SP_DEVINFO_DATA data = NewData();
            bool registered = false;
            string instanceId = null;
            try
            {
                // "Net" is the class name, as devcon passes it; with
                // DICD_GENERATE_ID Windows makes the instance id ROOT\NET\nnnn.
                if (!SetupDiCreateDeviceInfoW(set, "Net", ref cls, null, IntPtr.Zero, DICD_GENERATE_ID, ref data))
                    throw Failure("SetupDiCreateDeviceInfoW");
                byte[] hwid = Encoding.Unicode.GetBytes(hardwareId + "\0\0");
                if (!SetupDiSetDeviceRegistryPropertyW(set, ref data, SPDRP_HARDWAREID, hwid, (uint)hwid.Length))
                    throw Failure("SetupDiSetDeviceRegistryPropertyW(SPDRP_HARDWAREID)");
                if (!SetupDiCallClassInstaller(DIF_REGISTERDEVICE, set, ref data))
                    throw Failure("SetupDiCallClassInstaller(DIF_REGISTERDEVICE)");
                registered = true;
                instanceId = InstanceId(set, ref data);
                bool reboot;
                if (!UpdateDriverForPlugAndPlayDevicesW(IntPtr.Zero, hardwareId, infPath, InstallFlags, out reboot))
                    throw Failure("UpdateDriverForPlugAndPlayDevicesW(" + infPath + ")");
                rebootRequired = reboot;
                return instanceId;
            }
            catch (Win32Exception failure)
            {
                // Never leave a half-made device behind. Before DIF_REGISTERDEVICE
                // the element lives only in the set and goes with it.
                if (!registered)
                    throw;
                try
                {
                    RemoveElement(set, ref data);
                }
                catch (Win32Exception cleanup)
                {
                    // Say so: the caller must not claim the host is clean.
                    throw new LoopbackCleanupException(failure, instanceId, cleanup);
                }
                throw;
            }
            finally
            {
                SetupDiDestroyDeviceInfoList(set);
            }
        }

        // Whether the device has a driver installed (its driver key,
        // SPDRP_DRIVER, exists). Any failure other than "no such property"
        // is thrown: a failed read must never look like "no driver".
        public static bool HasDriver(string instanceId)
        {
            IntPtr set = NewNetSet();
            try
            {
                SP_DEVINFO_DATA data = NewData();
                if (!OpenDevice(set, instanceId, ref data))
                    throw new Win32Exception(ERROR_NO_SUCH_DEVINST,
                        FailureMessage("SetupDiOpenDeviceInfoW(" + instanceId + ")", ERROR_NO_SUCH_DEVINST));
                uint regType;
                uint needed;
                byte[] buffer = new byte[512];
                if (SetupDiGetDeviceRegistryPropertyW(set, ref data, SPDRP_DRIVER, out regType, buffer,
                        (uint)buffer.Length, out needed))
                    return true;
                int code = Marshal.GetLastWin32Error();
                if (code == ERROR_INVALID_DATA)
                    return false;
                if (code == ERROR_INSUFFICIENT_BUFFER)
                    return true;
                throw new Win32Exception(code, FailureMessage("SetupDiGetDeviceRegistryPropertyW(SPDRP_DRIVER, " + instanceId + ")", code));
            }
            finally
            {
                SetupDiDestroyDeviceInfoList(set);
            }
        }

        // Bind the driver again to every device with hardwareId (repair of a
        // device that exists without its driver).
        public static bool UpdateDriver(string hardwareId, string infPath)
        {
            bool reboot;
            if (!UpdateDriverForPlugAndPlayDevicesW(IntPtr.Zero, hardwareId, infPath, InstallFlags, out reboot))
                throw Failure("UpdateDriverForPlugAndPlayDevicesW(" + infPath + ")");
            return reboot;
        }

        // Remove one device by instance id. False when it does not exist;
        // rebootRequired as the device install params say after DIF_REMOVE.
        public static bool Remove(string instanceId, out bool rebootRequired)
        {
            rebootRequired = false;
            IntPtr set = NewNetSet();
            try
            {
                SP_DEVINFO_DATA data = NewData();
                if (!OpenDevice(set, instanceId, ref data))
                    return false;
                rebootRequired = RemoveElement(set, ref data);
                return true;
            }
            finally
            {
                SetupDiDestroyDeviceInfoList(set);
            }
        }
    }

    // An install failed and the half-made device it left could not be
    // removed either: both errors, and the device, are named.
    public class LoopbackCleanupException : Win32Exception
    {
        public LoopbackCleanupException(Win32Exception failure, string instanceId, Win32Exception cleanup)
            : base(failure.NativeErrorCode, String.Format(
                "{0}; removing the half-made device {1} failed too: {2}. Remove it in Device Manager",
                failure.Message, instanceId ?? "(unknown id)", cleanup.Message))
        {
        }
    }
}
'@

function Get-ErrorText {
    # A .NET exception thrown inside a method call arrives wrapped in a
    # MethodInvocationException: report the inner message only.
    param($ErrorRecord)
    $e = $ErrorRecord.Exception
    if ($e.InnerException) { $e = $e.InnerException }
    return $e.Message
}

function Get-AllAdapters {
    # Every network adapter, hidden ones too. A failed query stops the
    # module: "could not read" must never pass for "no adapter", which
    # would lead to a driver install. Streamed (no array return), so that
    # Get-AllAdapters | Where-Object filters adapter by adapter.
    try {
        Get-NetAdapter -IncludeHidden -ErrorAction Stop
    }
    catch {
        $module.FailJson("could not read the network adapters (Get-NetAdapter): $(Get-ErrorText -ErrorRecord $_). Nothing was changed.", $_)
    }
}

function Get-VipAdapterIndexes {
    # Interface indexes holding one of the wanted VIPs, in either policy
    # store. Read-only; an address that is not there is not an error.
    $indexes = @()
    foreach ($vip in $module.Params.vips) {
        $bare = ($vip -split '/')[0].Trim()
        foreach ($store in @('ActiveStore', 'PersistentStore')) {
            try {
                $indexes += @(Get-NetIPAddress -IPAddress $bare -PolicyStore $store -ErrorAction Stop | ForEach-Object { [int]$_.InterfaceIndex })
            }
            catch {
                if ($_.CategoryInfo.Category -ne 'ObjectNotFound') {
                    $module.FailJson("could not read the addresses (Get-NetIPAddress -IPAddress $bare -PolicyStore $store): $(Get-ErrorText -ErrorRecord $_). Nothing was changed.", $_)
                }
            }
        }
    }
    return , @($indexes | Sort-Object -Unique)
}

function Save-PriorName {
    # Taking over a loopback made by hand (the vendor manual's way): record
    # its name before the first rename, where dsr_win_netconfig keeps every
    # value it changes (<registry_key>\prior\<interface guid>), so that
    # state=absent gives it back. Never overwritten: the first name counts.
    param([string]$Guid, [string]$Value)
    if (-not $Guid) { return }
    $key = "$regKey\prior\$Guid"
    if (-not (Test-Path -LiteralPath $key)) { New-Item -Path $key -Force | Out-Null }
    $existing = Get-ItemProperty -LiteralPath $key -ErrorAction Stop
    if ($existing -and ($existing.PSObject.Properties.Name -contains 'name')) { return }
    New-ItemProperty -LiteralPath $key -Name 'name' -Value $Value -PropertyType String -Force | Out-Null
}

function Test-MarkerMatch {
    # True when the marker names this adapter's device: same instance id
    # and, once recorded, the same interface GUID. Windows can give a
    # reused ROOT\NET\nnnn to a device made by hand; its GUID differs.
    param($Marker, $Adapter)
    if (-not $Marker.created -or -not $Adapter) { return $false }
    if ([string]$Adapter.PnPDeviceID -ne [string]$Marker.instance_id) { return $false }
    return ((-not $Marker.interface_guid) -or ([string]$Adapter.InterfaceGuid -eq [string]$Marker.interface_guid))
}

function Test-CreatedByRole {
    # True when this role installed the adapter (its marker names it).
    param($Current)
    return (Test-MarkerMatch -Marker $Current.marker -Adapter $Current.adapter)
}

function Get-Marker {
    $marker = @{ created = $false; instance_id = ''; interface_guid = '' }
    if (Test-Path -LiteralPath $regKey) {
        $props = Get-ItemProperty -LiteralPath $regKey -ErrorAction Stop
        if ($props) {
            if ($props.PSObject.Properties.Name -contains 'LoopbackCreatedByRole') {
                $marker.created = ([int]$props.LoopbackCreatedByRole -eq 1)
            }
            if ($props.PSObject.Properties.Name -contains 'LoopbackInstanceId') {
                $marker.instance_id = [string]$props.LoopbackInstanceId
            }
            if ($props.PSObject.Properties.Name -contains 'LoopbackInterfaceGuid') {
                $marker.interface_guid = [string]$props.LoopbackInterfaceGuid
            }
        }
    }
    return $marker
}

function Set-Marker {
    # The device instance id at once (a crash before the adapter appears
    # still leaves a trace), the interface GUID as soon as it exists.
    param([string]$InstanceId, [string]$InterfaceGuid)
    if (-not (Test-Path -LiteralPath $regKey)) {
        New-Item -Path $regKey -Force | Out-Null
    }
    New-ItemProperty -LiteralPath $regKey -Name 'LoopbackCreatedByRole' -Value 1 -PropertyType DWord -Force | Out-Null
    New-ItemProperty -LiteralPath $regKey -Name 'LoopbackInstanceId' -Value $InstanceId -PropertyType String -Force | Out-Null
    if ($InterfaceGuid) {
        New-ItemProperty -LiteralPath $regKey -Name 'LoopbackInterfaceGuid' -Value $InterfaceGuid -PropertyType String -Force | Out-Null
    }
}

function Clear-Marker {
    if (Test-Path -LiteralPath $regKey) {
        $props = Get-ItemProperty -LiteralPath $regKey -ErrorAction Stop
        foreach ($valueName in @('LoopbackCreatedByRole', 'LoopbackInstanceId', 'LoopbackInterfaceGuid')) {
            if ($props.PSObject.Properties.Name -contains $valueName) {
                Remove-ItemProperty -LiteralPath $regKey -Name $valueName -ErrorAction Stop
            }
        }
        $left = Get-Item -LiteralPath $regKey
        if ($left.ValueCount -eq 0 -and $left.SubKeyCount -eq 0) {
            Remove-Item -LiteralPath $regKey -Force
        }
    }
}

function Get-LoopbackAdapter {
    param([string[]]$InstanceIds)
    $result = @()
    foreach ($adapter in (Get-AllAdapters)) {
        if ($InstanceIds -contains [string]$adapter.PnPDeviceID) {
            $result += $adapter
        }
    }
    # SetupAPI order is no order: sort by interface index, so "the first"
    # is the same on every run.
    return , @($result | Sort-Object -Property ifIndex)
}

function Select-Loopback {
    # Which KM-TEST adapter is "ours", in this order: the interface GUID the
    # role's preflight chose (dsr_win_facts applies the same rules), the one
    # with the wanted name, the one this role created (marker), the one
    # holding a wanted VIP, else the lowest interface index.
    param($Adapters, $Marker)
    if ($Adapters.Count -eq 0) { return $null }
    $wantedGuid = $module.Params.interface_guid
    if ($wantedGuid) {
        $byGuid = @($Adapters | Where-Object { [string]$_.InterfaceGuid -eq $wantedGuid })
        if ($byGuid.Count -gt 0) { return $byGuid[0] }
    }
    $byName = @($Adapters | Where-Object { [string]$_.Name -eq $name })
    if ($byName.Count -gt 0) { return $byName[0] }
    $byMarker = @($Adapters | Where-Object { Test-MarkerMatch -Marker $Marker -Adapter $_ })
    if ($byMarker.Count -gt 0) { return $byMarker[0] }
    if ($module.Params.vips.Count -gt 0) {
        $holding = Get-VipAdapterIndexes
        $byVip = @($Adapters | Where-Object { $holding -contains [int]$_.ifIndex })
        if ($byVip.Count -gt 0) { return $byVip[0] }
    }
    return $Adapters[0]
}

function Get-LoopbackState {
    try {
        $ids = @([Dsrprov.LoopbackDevice]::Find($hardwareId))
    }
    catch {
        $module.FailJson("could not list the KM-TEST loopback devices: $(Get-ErrorText -ErrorRecord $_). Nothing was changed.", $_)
    }
    $adapters = Get-LoopbackAdapter -InstanceIds $ids
    $marker = Get-Marker
    return @{
        instance_ids = $ids
        adapters = $adapters
        adapter = (Select-Loopback -Adapters $adapters -Marker $marker)
        marker = $marker
    }
}

function ConvertTo-DiffState {
    param($Current)
    if (-not $Current.adapter -and $Current.instance_ids.Count -eq 0) {
        return @{ present = $false }
    }
    $out = @{
        present = $true
        devices = @($Current.instance_ids)
        created_by_role = [bool]$Current.marker.created
    }
    if ($Current.adapter) {
        $out.name = [string]$Current.adapter.Name
        $out.description = [string]$Current.adapter.InterfaceDescription
        $out.driver_bound = $true
    }
    else {
        $out.driver_bound = $false
    }
    return $out
}

function Set-Result {
    param($Current)
    $module.Result.instance_ids = @($Current.instance_ids)
    $module.Result.created_by_role = [bool](Test-CreatedByRole -Current $Current)
    if ($Current.adapter) {
        $module.Result.name = [string]$Current.adapter.Name
        $module.Result.interface_index = [int]$Current.adapter.ifIndex
        $module.Result.interface_guid = [string]$Current.adapter.InterfaceGuid
        $module.Result.instance_id = [string]$Current.adapter.PnPDeviceID
        $module.Result.description = [string]$Current.adapter.InterfaceDescription
    }
    else {
        $module.Result.name = $null
        $module.Result.interface_index = $null
        $module.Result.interface_guid = $null
        $module.Result.instance_id = $null
        $module.Result.description = $null
    }
}

function Wait-Adapter {
    param([string]$InstanceId)
    $deadline = (Get-Date).AddSeconds($module.Params.wait_seconds)
    while ((Get-Date) -lt $deadline) {
        $found = Get-LoopbackAdapter -InstanceIds @($InstanceId)
        if ($found.Count -gt 0) { return $found[0] }
        Start-Sleep -Seconds 1
    }
    return $null
}

$module.Result.changed = $false
$module.Result.reboot_required = $false
$current = Get-LoopbackState
$before = ConvertTo-DiffState -Current $current
$module.Diff.before = $before
$after = ConvertTo-DiffState -Current $current
$renameTo = $null

if ($state -eq 'present') {
    if (-not (Test-Path -LiteralPath $infPath)) {
        $module.FailJson("the loopback driver '$infPath' does not exist on this host: the Microsoft KM-TEST Loopback Adapter cannot be installed. Nothing was changed.")
    }

    # A conflicting, non-loopback adapter already uses the wanted name. The
    # name is compared, never passed to -Name (which takes wildcards).
    $clash = @(Get-AllAdapters | Where-Object {
            [string]$_.Name -eq $name -and $current.instance_ids -notcontains [string]$_.PnPDeviceID
        })
    if ($clash.Count -gt 0) {
        $module.FailJson("an adapter named '$name' exists and is not a KM-TEST loopback ($($clash[0].InterfaceDescription)); choose another dsr_realserver_windows_loopback_name. Nothing was changed.")
    }

    if ($current.instance_ids.Count -eq 0) {
        # 1. Install.
        $module.Result.changed = $true
        $after = @{ present = $true; name = $name; description = 'Microsoft KM-TEST Loopback Adapter'; driver_bound = $true; created_by_role = $true; devices = @('(new)') }
        if (-not $module.CheckMode) {
            $reboot = $false
            try {
                $newId = [Dsrprov.LoopbackDevice]::Install($hardwareId, $infPath, [ref]$reboot)
            }
            catch {
                $inner = $_.Exception
                if ($inner.InnerException) { $inner = $inner.InnerException }
                if ($inner -is [Dsrprov.LoopbackCleanupException]) {
                    $module.FailJson("the Microsoft KM-TEST Loopback Adapter failed to install: $($inner.Message). Nothing else was changed.", $_)
                }
                $module.FailJson("the Microsoft KM-TEST Loopback Adapter failed to install: $(Get-ErrorText -ErrorRecord $_). Any half-made device was removed again; nothing else was changed.", $_)
            }
            Set-Marker -InstanceId $newId
            $module.Result.reboot_required = [bool]$reboot
            $adapter = Wait-Adapter -InstanceId $newId
            if (-not $adapter) {
                # The driver did not come up: undo, so a re-run starts clean.
                $removeReboot = $false
                try {
                    [Dsrprov.LoopbackDevice]::Remove($newId, [ref]$removeReboot) | Out-Null
                }
                catch {
                    # The marker stays, so state=absent (or a re-run) finds it.
                    $module.FailJson("the Microsoft KM-TEST Loopback Adapter was installed ($newId) but no network adapter appeared within $($module.Params.wait_seconds) s, and removing the device failed: $(Get-ErrorText -ErrorRecord $_). See %windir%\inf\setupapi.dev.log.", $_)
                }
                Clear-Marker
                $module.Result.reboot_required = [bool]$removeReboot
                $module.FailJson("the Microsoft KM-TEST Loopback Adapter was installed ($newId) but no network adapter appeared within $($module.Params.wait_seconds) s; the device was removed again. See %windir%\inf\setupapi.dev.log.")
            }
            Set-Marker -InstanceId $newId -InterfaceGuid ([string]$adapter.InterfaceGuid)
            $current = Get-LoopbackState
        }
    }
    elseif (-not $current.adapter) {
        # Devices exist but none has a network adapter. Only a device that
        # truly has no driver (SetupAPI: no driver key) is repaired, and only
        # when it is the one KM-TEST device: UpdateDriverForPlugAndPlayDevices
        # with INSTALLFLAG_FORCE reinstalls the driver of every device with
        # the hardware id, which would restart loopbacks that carry VIPs.
        $driverless = @()
        try {
            foreach ($id in $current.instance_ids) {
                if (-not [Dsrprov.LoopbackDevice]::HasDriver($id)) { $driverless += $id }
            }
        }
        catch {
            $module.FailJson("could not read the driver of the KM-TEST loopback devices ($($current.instance_ids -join ', ')): $(Get-ErrorText -ErrorRecord $_). Nothing was changed.", $_)
        }
        if ($driverless.Count -eq 0) {
            # A driver is there, the adapter not yet (still starting): wait.
            $adapter = $null
            if (-not $module.CheckMode) { $adapter = Wait-Adapter -InstanceId $current.instance_ids[0] }
            if (-not $adapter -and -not $module.CheckMode) {
                $module.FailJson("the KM-TEST loopback device $($current.instance_ids -join ', ') has its driver but no network adapter appeared within $($module.Params.wait_seconds) s (the driver may have failed to start: see Device Manager and %windir%\inf\setupapi.dev.log). Nothing was changed.")
            }
            $current = Get-LoopbackState
        }
        elseif ($current.instance_ids.Count -gt 1) {
            $module.FailJson("the KM-TEST loopback device $($driverless -join ', ') has no driver, and other KM-TEST loopbacks exist ($($current.instance_ids -join ', ')): reinstalling the driver would restart all of them. Remove or repair that device in Device Manager, then run again. Nothing was changed.")
        }
        else {
            # 1b. The one device has no driver (an interrupted install): bind it.
            $module.Result.changed = $true
            $after.driver_bound = $true
            $after.name = $name
            if (-not $module.CheckMode) {
                try {
                    $module.Result.reboot_required = [bool][Dsrprov.LoopbackDevice]::UpdateDriver($hardwareId, $infPath)
                }
                catch {
                    $module.FailJson("the Microsoft KM-TEST Loopback Adapter exists ($($driverless[0])) but its driver failed to install: $(Get-ErrorText -ErrorRecord $_)", $_)
                }
                $null = Wait-Adapter -InstanceId $driverless[0]
                $current = Get-LoopbackState
                if (-not $current.adapter) {
                    $module.FailJson("the Microsoft KM-TEST Loopback Adapter driver was installed but no network adapter appeared within $($module.Params.wait_seconds) s. See %windir%\inf\setupapi.dev.log.")
                }
            }
        }
    }

    # 2. Rename: the adapter object is piped to Rename-NetAdapter, never
    # named with -Name (a name with [ ] * ? would match other adapters).
    # A loopback that exists and that this role did not install is taken over.
    $module.Result.taken_over = [bool]($current.adapter -and -not (Test-CreatedByRole -Current $current))
    if ($current.adapter -and $current.adapter.Name -ne $name) {
        $module.Result.changed = $true
        $after.name = $name
        $renameTo = $name
        if (-not $module.CheckMode) {
            if ($module.Result.taken_over) {
                Save-PriorName -Guid ([string]$current.adapter.InterfaceGuid) -Value ([string]$current.adapter.Name)
            }
            $current.adapter | Rename-NetAdapter -NewName $name -ErrorAction Stop
            $current = Get-LoopbackState
        }
    }
    if ($current.instance_ids.Count -gt 1) {
        $module.Warn("more than one KM-TEST loopback device exists ($($current.instance_ids -join ', ')); this role uses '$name' and leaves the others alone")
    }
    if (-not $module.CheckMode) {
        $after = ConvertTo-DiffState -Current $current
    }
}
else {
    # state: absent. Remove the device only if this role created it: the
    # marker's instance id and interface GUID must both match the device.
    $marker = $current.marker
    $markedAdapter = @($current.adapters | Where-Object { [string]$_.PnPDeviceID -eq $marker.instance_id })
    $exists = ($marker.instance_id -and ($current.instance_ids -contains $marker.instance_id))
    $markerMatches = $false
    if ($exists) {
        if ($markedAdapter.Count -gt 0) {
            $markerMatches = Test-MarkerMatch -Marker $marker -Adapter $markedAdapter[0]
        }
        else {
            # No network adapter (no driver): nothing to compare the GUID
            # with; only a marker that never got a GUID may claim it.
            $markerMatches = ($marker.created -and -not $marker.interface_guid)
        }
    }
    if ($marker.created -and $markerMatches) {
        $module.Result.changed = $true
        $after = @{ present = $false }
        if (-not $module.CheckMode) {
            $removeReboot = $false
            try {
                [Dsrprov.LoopbackDevice]::Remove($marker.instance_id, [ref]$removeReboot) | Out-Null
            }
            catch {
                $module.FailJson("failed to remove the KM-TEST loopback device $($marker.instance_id): $(Get-ErrorText -ErrorRecord $_)", $_)
            }
            $module.Result.reboot_required = [bool]$removeReboot
            Clear-Marker
            $current = Get-LoopbackState
            $after = ConvertTo-DiffState -Current $current
        }
    }
    elseif ($marker.created -or $marker.instance_id) {
        # The marker points at a device that no longer exists, or at one
        # whose interface GUID is not the recorded one (Windows reused the
        # instance id): forget the marker, leave the device alone.
        $module.Result.changed = $true
        if ($exists) {
            $module.Warn("the KM-TEST loopback device $($marker.instance_id) is not the one this role created (its interface GUID is not $($marker.interface_guid)); it is left in place")
        }
        if (-not $module.CheckMode) {
            Clear-Marker
            $current = Get-LoopbackState
        }
        $after = ConvertTo-DiffState -Current $current
        $after.created_by_role = $false
    }
    elseif ($current.adapter) {
        $module.Result.msg = "the KM-TEST loopback '$($current.adapter.Name)' was not created by this role and is left in place"
    }
}

Set-Result -Current $current
if ($renameTo -and $module.CheckMode) {
    # What a real run would return: the adapter under its new name.
    $module.Result.name = $renameTo
}
$module.Diff.after = $after
$module.ExitJson()
