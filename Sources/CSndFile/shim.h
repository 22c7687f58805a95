// Implementation detail of the Audio modality: only its audio codec file imports this module.
#include <sndfile.h>
