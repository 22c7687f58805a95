// Implementation detail of the Tensor target: the only Swift file importing it is Sources/Tensor/BLAS.swift.
#include <cblas.h>
// Declared in OpenBLAS' cblas.h; repeated so the shim documents what Tensor relies on.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char *openblas_get_corename(void);
char *openblas_get_config(void);
#include "core.h"
