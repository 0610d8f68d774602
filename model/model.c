/* model: see model.h. (being written) */
#include "model/model.h"
