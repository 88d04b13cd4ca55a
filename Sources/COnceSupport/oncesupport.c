// See include/oncesupport.h: everything is static inline there.
#include "oncesupport.h"
