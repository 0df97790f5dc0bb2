// OpenBLAS's CBLAS interface; Debian installs cblas.h under the openblas include folder,
// which pkg-config adds to the search path.
#include <cblas.h>
