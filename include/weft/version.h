/* weft/version.h: which weft this is, at compile time (the macros) and at run time
 * (wf_version(): the library actually linked, which may differ from the headers compiled
 * against when a shared library is swapped).
 *
 * The numbers follow meson.build's project version; tests/doc_examples checks they agree,
 * so a release bumps both. */
#ifndef WEFT_VERSION_H
#define WEFT_VERSION_H

#define WF_VERSION_MAJOR 0
#define WF_VERSION_MINOR 1
#define WF_VERSION_PATCH 0
#define WF_VERSION_STRING "0.1.0"
/* One number that orders releases: #if WF_VERSION_NUMBER >= WF_VERSION_ENCODE(0, 2, 0) */
#define WF_VERSION_ENCODE(major, minor, patch) ((major) * 10000 + (minor) * 100 + (patch))
#define WF_VERSION_NUMBER WF_VERSION_ENCODE(WF_VERSION_MAJOR, WF_VERSION_MINOR, WF_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* The linked library's version, "MAJOR.MINOR.PATCH" (a static string). */
const char *wf_version(void);

#ifdef __cplusplus
}
#endif
#endif
