# dmgbuild settings for SayIt's disk image (macOS only; dmgbuild drives hdiutil).
#   dmgbuild -s installers/macos/dmg_settings.py -D app=dist/SayIt.app \
#            -D icon=resources/icons/sayit.icns "SayIt" dist/SayIt-arm64.dmg
# `defines` (-D) and `format`/`size` are provided by dmgbuild when it runs this file.
import os.path

application = defines.get("app", "dist/SayIt.app")  # noqa: F821 - injected by dmgbuild
appname = os.path.basename(application)

format = defines.get("format", "UDZO")  # noqa: F821  (zlib-compressed, read-only)
filesystem = "HFS+"
size = None  # computed from the contents
files = [application]
symlinks = {"Applications": "/Applications"}  # drag SayIt onto Applications
badge_icon = defines.get("icon")  # noqa: F821  (-D icon=resources/icons/sayit.icns)
icon_locations = {appname: (140, 120), "Applications": (400, 120)}
window_rect = ((200, 120), (540, 300))
default_view = "icon-view"
show_icon_preview = False
show_status_bar = False
show_tab_view = False
show_toolbar = False
show_pathbar = False
show_sidebar = False
arrange_by = None
icon_size = 96
text_size = 13
