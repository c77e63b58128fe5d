/*
 * version.h — perkhub's version, the one place it is written: perkhubd
 * --version and GET /v1/health say it, perkctl --version prints it beside the
 * server's. Semantic versioning; the plugin ABI has its own (sdk/).
 */
#ifndef PH_VERSION_H
#define PH_VERSION_H

#define PH_VERSION "0.1.0"

#endif
