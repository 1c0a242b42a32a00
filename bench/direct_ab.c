/* A/B timing of builds of the C kernels on one layer (dev tool): each argument after the layer is a
 * shared library built from a csrc/ tree (e.g. with -DSOME_VARIANT); calls alternate between them
 * and the median of ~20 ms samples is printed, so a shared machine's load hits every variant alike.
 * Build a variant: gcc -O3 -std=gnu11 -fno-math-errno -fno-trapping-math -pthread -fPIC -shared -Icsrc csrc/*.c csrc/{direct,dwconv,gemm,generic}/*.c -o /tmp/v0.so -lm
 * Build:  gcc -O2 -Icsrc bench/direct_ab.c -o /tmp/direct_ab -ldl
 * Run:    /tmp/direct_ab cin cout h w k stride pad dil layout(0 NCHW, 1 NHWC) threads reps /tmp/v0.so /tmp/v1.so ...
 *         (AB_N=8 for batch 8) */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fastpoint.h"
typedef int (*conv_t)(const fp_conv_problem*,const float*,const void*,const float*,float*);
typedef int (*pack_t)(const fp_conv_problem*,const float*,void*);
typedef int64_t (*pb_t)(const fp_conv_problem*,int);
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){
  fp_conv_problem p; memset(&p,0,sizeof p);
  int64_t cin=atol(argv[1]),cout=atol(argv[2]),h=atol(argv[3]),w=atol(argv[4]),k=atol(argv[5]),s=atol(argv[6]),pad=atol(argv[7]),d=atol(argv[8]);
  p.n=1;p.cin=cin;p.h=h;p.w=w;p.cout=cout;p.kh=k;p.kw=k;p.stride_h=s;p.stride_w=s;p.pad_top=pad;p.pad_left=pad;p.dil_h=d;p.dil_w=d;p.groups=1;
  char*ns=getenv("AB_N"); if(ns)p.n=atol(ns);
  p.oh=(h+2*pad-d*(k-1)-1)/s+1;p.ow=(w+2*pad-d*(k-1)-1)/s+1;p.layout=atoi(argv[9]);p.relu=1;p.num_threads=atoi(argv[10]);
  int reps=atoi(argv[11]);int nl=argc-12;
  float*x=malloc(4*p.n*cin*h*w),*wt=malloc(4*cout*cin*k*k),*b=malloc(4*cout),*y=malloc(4*p.n*cout*p.oh*p.ow);
  for(int64_t i=0;i<p.n*cin*h*w;i++)x[i]=(i%7)-3;for(int64_t i=0;i<cout*cin*k*k;i++)wt[i]=(i%5)-2;for(int i=0;i<cout;i++)b[i]=1;
  conv_t cv[8];void*pk[8];double *ts[8];
  double fl=2.0*p.n*cout*cin*k*k*p.oh*p.ow;
  for(int l=0;l<nl;l++){void*hd=dlopen(argv[12+l],RTLD_NOW|RTLD_LOCAL);if(!hd){printf("%s\n",dlerror());return 1;}
    cv[l]=(conv_t)dlsym(hd,"fp_conv_f32");pb_t pb=(pb_t)dlsym(hd,"fp_packed_bytes");pack_t pf=(pack_t)dlsym(hd,"fp_pack_f32");
    pk[l]=malloc(pb(&p,0));pf(&p,wt,pk[l]);ts[l]=malloc(sizeof(double)*reps);}
  /* iterations per sample ~ 20 ms */
  double t0=now();cv[0](&p,x,pk[0],b,y);double one=now()-t0;int it=(int)(0.02/one);if(it<1)it=1;
  for(int r=0;r<reps;r++)for(int l=0;l<nl;l++){double t=now();for(int i=0;i<it;i++)cv[l](&p,x,pk[l],b,y);ts[l][r]=(now()-t)/it;}
  for(int l=0;l<nl;l++){qsort(ts[l],reps,sizeof(double),cmp);printf("%-22s %8.1f GF (med %.3f ms, min %.1f GF)\n",argv[12+l],fl/ts[l][reps/2]*1e-9,ts[l][reps/2]*1e3,fl/ts[l][0]*1e-9);}
  return 0;}
