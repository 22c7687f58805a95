// Implementation detail of diffuse: only Sources/Workflow/MPI.swift imports this module.
// MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM and MPI_IN_PLACE are macros over Open MPI's globals that
// Swift cannot import; each call the program makes is wrapped here whole.
#include <mpi.h>

static inline int diffuse_mpi_init(void) {
    int provided = 0;
    // Calls come from one thread at a time (the command's); kernels' worker threads never call MPI.
    return MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
}
static inline int diffuse_mpi_rank(void) { int r = -1; MPI_Comm_rank(MPI_COMM_WORLD, &r); return r; }
static inline int diffuse_mpi_size(void) { int s = 0; MPI_Comm_size(MPI_COMM_WORLD, &s); return s; }
/// buf[0..<count] summed over every rank, in place; every rank gets the same result.
static inline int diffuse_mpi_allreduce_sum(float *buf, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}
static inline int diffuse_mpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }
static inline int diffuse_mpi_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }
static inline int diffuse_mpi_finalize(void) { return MPI_Finalize(); }
static inline double diffuse_mpi_wtime(void) { return MPI_Wtime(); }
