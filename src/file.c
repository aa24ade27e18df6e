/* placeholder: being written */
#include "internal.h"
int pd_file_open(pd_store **out, const char *path, unsigned flags) { (void)path; (void)flags; *out = NULL; return pd__err(NULL, PD_ERR_UNSUPPORTED, 0, "file: not yet"); }
