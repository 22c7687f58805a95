// Implementation detail of the Image modality: only its PNG codec file imports this module.
#include <png.h>
static inline size_t cpng_image_size(png_image image) { return PNG_IMAGE_SIZE(image); }
static inline int cpng_image_failed(png_image image) { return PNG_IMAGE_FAILED(image); }
