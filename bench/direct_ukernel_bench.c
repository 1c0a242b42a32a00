/* The direct-convolution micro-kernel alone, 1 thread (dev tool): one register tile called over and
 * over on the same strip and weights, so everything it touches stays in L1 (or L2 when cin x taps x
 * blocks x 64 B outgrows L1).  Its GFLOP/s against `fastpoint info`'s FMA peak is the ceiling of the
 * in-situ kernel.
 * Build: gcc -O3 -std=gnu11 -pthread -Icsrc csrc/*.c csrc/{direct,dwconv,gemm,generic}/*.c bench/direct_ukernel_bench.c -o /tmp/dukb -lm
 * Run:   /tmp/dukb rw nb cin taps strip_channel_stride iterations row_stride   (e.g. 14 2 16 9 256 100000 58) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "direct/direct.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
int main(int argc,char**argv){
  int rw=atoi(argv[1]),nb=atoi(argv[2]);int64_t cin=atol(argv[3]);int64_t T=atol(argv[4]);int64_t cs=atol(argv[5]);int iters=atoi(argv[6]);
  int64_t rs=atol(argv[7]);
  float*pix=aligned_alloc(64,4*(cin*cs+1024));for(int64_t i=0;i<cin*cs+1024;i++)pix[i]=1e-3f*(i%7);
  int64_t wblk=cin*T*16;float*w=aligned_alloc(64,4*wblk*nb);for(int64_t i=0;i<wblk*nb;i++)w[i]=1e-3f;
  int64_t toff[64];int kw=(int)(T==9?3:T==49?7:1);for(int t=0;t<T;t++)toff[t]=(t/kw)*rs+t%kw;
  float init[64]={0};float out[14*64*2] __attribute__((aligned(64)));
  fp_dtile a={pix,toff,0,T,T,cin,cs,w,wblk,init,0,out,nb*16,1};
  fp_dkernel k=fp_direct_kernel(FP_ISA_AVX512,rw,nb);
  double best=1e9;for(int r=0;r<5;r++){double t0=now();for(int i=0;i<iters;i++){k(&a);}double t=(now()-t0)/iters;if(t<best)best=t;}
  double fl=2.0*rw*nb*16*cin*T;printf("rw %d nb %d cin %ld T %ld: %.1f GFLOP/s  (%.1f ns)\n",rw,nb,(long)cin,(long)T,fl/best*1e-9,best*1e9);return 0;}
