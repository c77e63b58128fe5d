# install.cmake — `make install` / `cmake --install build` (DESTDIR honoured).
# Included from the top CMakeLists.txt. Paths derive from CMAKE_INSTALL_PREFIX
# (default /usr/local) through GNUInstallDirs:
#   <prefix>/sbin/perkhubd                       a system daemon, not a user command
#   <prefix>/bin/perkctl                         the ops CLI, run by people
#   <prefix>/lib/perkhub/plugins/<name>.so       PH_INSTALL_PLUGINDIR
#   <sysconfdir>/perkhub/perkhub.yaml.example    plugin_dir and /etc/perkhub paths rewritten
#   <prefix>/lib/systemd/system/perkhubd.service
#   <prefix>/lib/sysusers.d/perkhub.conf
#   <datadir>/doc/perkhub/                       operations.md, config.md, logrotate example
# sysconfdir is /etc for the prefix /usr, <prefix>/etc otherwise (GNUInstallDirs).
include(GNUInstallDirs)

set(PH_INSTALL_PLUGINDIR "lib/perkhub/plugins" CACHE STRING
  "plugin directory, relative to the prefix (the installed example config names it)")
set(PH_FULL_SBINDIR "${CMAKE_INSTALL_FULL_SBINDIR}")
set(PH_FULL_PLUGINDIR "${CMAKE_INSTALL_PREFIX}/${PH_INSTALL_PLUGINDIR}")
set(PH_FULL_CONFDIR "${CMAKE_INSTALL_FULL_SYSCONFDIR}/perkhub")

# The example config with the paths of this install: the plugin directory it
# names is the one the plugins go to, and its key and secret files are under
# the config directory.
file(READ ${CMAKE_SOURCE_DIR}/conf/perkhub.example.yaml PH_EXAMPLE)
string(REPLACE "/usr/lib/perkhub/plugins" "${PH_FULL_PLUGINDIR}" PH_EXAMPLE "${PH_EXAMPLE}")
string(REPLACE "/etc/perkhub/" "${PH_FULL_CONFDIR}/" PH_EXAMPLE "${PH_EXAMPLE}")
string(REPLACE "cp conf/perkhub.example.yaml conf/perkhub.yaml"
  "cp ${PH_FULL_CONFDIR}/perkhub.yaml.example ${PH_FULL_CONFDIR}/perkhub.yaml"
  PH_EXAMPLE "${PH_EXAMPLE}")
file(WRITE ${CMAKE_BINARY_DIR}/packaging/perkhub.yaml.example "${PH_EXAMPLE}")
configure_file(${CMAKE_SOURCE_DIR}/packaging/perkhubd.service.in
  ${CMAKE_BINARY_DIR}/packaging/perkhubd.service @ONLY)

install(TARGETS perkhubd RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS perkctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# every plugin of plugins/ (ph_add_plugin), not the test fixtures
get_property(PH_PLUGIN_TARGETS GLOBAL PROPERTY PH_PLUGIN_TARGETS)
install(TARGETS ${PH_PLUGIN_TARGETS} LIBRARY DESTINATION ${PH_INSTALL_PLUGINDIR})
install(FILES ${CMAKE_BINARY_DIR}/packaging/perkhub.yaml.example
  DESTINATION ${CMAKE_INSTALL_SYSCONFDIR}/perkhub)
install(FILES ${CMAKE_BINARY_DIR}/packaging/perkhubd.service DESTINATION lib/systemd/system)
install(FILES ${CMAKE_SOURCE_DIR}/packaging/perkhub.sysusers DESTINATION lib/sysusers.d
  RENAME perkhub.conf)
install(FILES ${CMAKE_SOURCE_DIR}/packaging/perkhub.logrotate ${CMAKE_SOURCE_DIR}/docs/operations.md
  ${CMAKE_SOURCE_DIR}/docs/config.md DESTINATION ${CMAKE_INSTALL_DOCDIR})

# ---- the plugin SDK (component sdk: `cmake --install build --component sdk`) ----
#   <includedir>/perkhub/plugin.h, testkit.h
#   <libdir>/libperkhub_testkit.a                the kit, with the core's host table
#   <libdir>/pkgconfig/perkhub-plugin.pc, perkhub-testkit.pc
#   <datadir>/perkhub/new-plugin/                what tools/new-plugin copies
#   <bindir>/perkhub-new-plugin                  tools/new-plugin
file(STRINGS ${CMAKE_SOURCE_DIR}/sdk/include/perkhub/plugin.h PH_ABI_LINES
  REGEX "^#define PERKHUB_ABI_(MAJOR|MINOR) ")
string(REGEX REPLACE ".*MAJOR ([0-9]+).*MINOR ([0-9]+).*" "\\1.\\2" PH_ABI_VERSION "${PH_ABI_LINES}")
# ${pcfiledir} plus this is the prefix, wherever `cmake --install --prefix` puts it
file(RELATIVE_PATH PH_PC_TO_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" PH_PC_TO_PREFIX "${PH_PC_TO_PREFIX}")
foreach(pc perkhub-plugin perkhub-testkit)
  configure_file(${CMAKE_SOURCE_DIR}/packaging/${pc}.pc.in ${CMAKE_BINARY_DIR}/packaging/${pc}.pc
    @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/packaging/${pc}.pc
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT sdk)
endforeach()
install(FILES ${CMAKE_SOURCE_DIR}/sdk/include/perkhub/plugin.h
  ${CMAKE_SOURCE_DIR}/sdk/include/perkhub/testkit.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/perkhub COMPONENT sdk)
if(TARGET perkhub_testkit)
  install(TARGETS perkhub_testkit ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT sdk)
endif()
install(DIRECTORY ${CMAKE_SOURCE_DIR}/plugins/example/
  DESTINATION ${CMAKE_INSTALL_DATADIR}/perkhub/new-plugin COMPONENT sdk
  PATTERN "__pycache__" EXCLUDE)
install(PROGRAMS ${CMAKE_SOURCE_DIR}/tools/new-plugin DESTINATION ${CMAKE_INSTALL_BINDIR}
  RENAME perkhub-new-plugin COMPONENT sdk)
