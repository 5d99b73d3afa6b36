; SayIt for Windows: Inno Setup 6 script for the PyInstaller one-folder bundle (dist\SayIt\).
; Build (from the repository root, after ./scripts/bundle or the CI workflow):
;   iscc /DAppVersion=0.1.0 /DSourceDir=..\..\dist\SayIt installers\windows\sayit.iss
;
; Per-user install (no administrator rights for the install itself), Start menu entry, an
; optional "start at login" task (the same HKCU Run value the tray's menu toggles), and an optional
; firewall rule that lets other PCs on a *Private* network reach the node's port (never the Public
; profile). Adding or removing a firewall rule needs administrator rights: only that step asks
; (UAC). Uninstall stops SayIt, removes the firewall rule and the login entry.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\SayIt"
#endif
#define AppName "SayIt"
#define NodePort "3000"
#define FirewallRule "SayIt node (TCP 3000)"
#define RunKey "Software\Microsoft\Windows\CurrentVersion\Run"

[Setup]
AppId={{6B1E2C8A-4F0D-4C59-9D0B-5A7E3C2F9A11}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=SayIt
DefaultDirName={localappdata}\Programs\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=SayIt-{#AppVersion}-windows-x64-setup
SetupIconFile=..\..\resources\icons\sayit.ico
UninstallDisplayIcon={app}\sayit-desktop.exe
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
CloseApplications=yes

[Tasks]
Name: "startatlogin"; Description: "Start SayIt when I sign in"; GroupDescription: "Start:"
Name: "firewall"; Description: "Let other PCs on my private network use this node (firewall rule for TCP {#NodePort}, Private profile only; asks for administrator rights)"; GroupDescription: "Network:"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\sayit-desktop.exe"; WorkingDir: "{app}"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"

[Registry]
; The tray's "Start SayIt at login" writes the same value (sayit_desktop.autostart.WindowsRunKey).
Root: HKCU; Subkey: "{#RunKey}"; ValueType: string; ValueName: "{#AppName}"; ValueData: """{app}\sayit-desktop.exe"""; Flags: uninsdeletevalue; Tasks: startatlogin
; Remembers that the firewall task ran, so uninstall asks for administrator rights only then.
Root: HKCU; Subkey: "Software\SayIt"; ValueType: string; ValueName: "FirewallRule"; ValueData: "{#FirewallRule}"; Flags: uninsdeletevalue uninsdeletekeyifempty; Tasks: firewall

[Run]
Filename: "{sys}\netsh.exe"; Parameters: "advfirewall firewall add rule name=""{#FirewallRule}"" dir=in action=allow protocol=TCP localport={#NodePort} profile=private program=""{app}\sayit-node.exe"""; Flags: runhidden shellexec waituntilterminated; Verb: runas; Tasks: firewall; StatusMsg: "Adding the firewall rule (Private networks only)..."
Filename: "{app}\sayit-desktop.exe"; Description: "Start SayIt now"; Flags: nowait postinstall skipifsilent

[UninstallRun]
; Stop the tray first: its Job Object then ends the node.
Filename: "{sys}\taskkill.exe"; Parameters: "/IM sayit-desktop.exe /T /F"; Flags: runhidden; RunOnceId: "StopSayIt"
Filename: "{sys}\netsh.exe"; Parameters: "advfirewall firewall delete rule name=""{#FirewallRule}"""; Flags: runhidden shellexec waituntilterminated; Verb: runas; RunOnceId: "DeleteFirewallRule"; Check: FirewallRuleWasAdded

[Code]
// The login entry may have been switched on from the tray's menu rather than by the task:
// uninstall removes it either way.
procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep = usPostUninstall then
    RegDeleteValue(HKEY_CURRENT_USER, '{#RunKey}', '{#AppName}');
end;

function FirewallRuleWasAdded(): Boolean;
begin
  Result := RegValueExists(HKEY_CURRENT_USER, 'Software\SayIt', 'FirewallRule');
end;
