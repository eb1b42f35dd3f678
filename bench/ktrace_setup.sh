# bench/ktrace_setup.sh: sourced by the GPU scripts before a kernel trace. Builds
# bench/ktrace.c into /tmp/libktrace.so against this machine's CUPTI (the newest activity-record
# struct its headers have) and puts CUPTI's folder on LD_LIBRARY_PATH; then run a program with
# CUDA_INJECTION64_PATH=/tmp/libktrace.so KTRACE_OUT=FILE.csv.
CI=$(dirname "$(find /usr/local/cuda/ /usr/local/cuda/extras /opt -name cupti.h 2>/dev/null | head -1)")
CL=$(find /usr/local/cuda/ /usr/local/cuda/extras /opt -name "libcupti.so*" 2>/dev/null | head -1)
for kv in 12 11 10 9; do
  cc -shared -fPIC -O1 -DKT_KERNEL=CUpti_ActivityKernel$kv -I"$CI" -I/usr/local/cuda/include bench/ktrace.c \
     -o /tmp/libktrace.so "$CL" 2>/dev/null && { echo "ktrace: Kernel$kv, $CL"; break; }
done
export LD_LIBRARY_PATH=$(dirname "$CL"):${LD_LIBRARY_PATH:-}
