// Implementation detail of the Image modality: only its IDX reader imports this module.
#include <zlib.h>
