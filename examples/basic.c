#include <partd/partd.h>
int main(void) { return pd_version_number() == PARTD_VERSION_NUMBER ? 0 : 1; }
