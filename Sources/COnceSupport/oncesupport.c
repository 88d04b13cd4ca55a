// See include/oncesupport.h. Compiled with _GNU_SOURCE, for O_DIRECT.
#define _GNU_SOURCE
#include <fcntl.h>
#include "oncesupport.h"

int ol_open_direct_flag(void) {
#if defined(O_DIRECT)
    return O_DIRECT;
#else
    return 0;
#endif
}
