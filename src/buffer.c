/* placeholder: being written */
#include "internal.h"
int pd_buffer_open(pd_store **out, pd_store **fast, pd_store **slow, uint64_t memory, unsigned flags) { (void)fast; (void)slow; (void)memory; (void)flags; *out = NULL; return pd__err(NULL, PD_ERR_UNSUPPORTED, 0, "buffer: not yet"); }
