/* Startup for C programs on qemu mps2-an500 (Cortex-M7): vector table, reset,
 * fault reporting, and the newlib hooks (_exit, _sbrk) that rdimon leaves to us.
 * I/O goes through semihosting (librdimon); exit status reaches qemu. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "m7_runtime.h"

#define REG(a) (*(volatile uint32_t *)(a))
#define SCB_CCR   REG(0xE000ED14u)
#define SCB_SHCSR REG(0xE000ED24u)
#define SCB_CFSR  REG(0xE000ED28u)
#define SCB_MMFAR REG(0xE000ED34u)
#define SCB_BFAR  REG(0xE000ED38u)
#define MPU_CTRL  REG(0xE000ED94u)
#define MPU_RNR   REG(0xE000ED98u)
#define MPU_RBAR  REG(0xE000ED9Cu)
#define MPU_RASR  REG(0xE000EDA0u)

#define SH_WRITE0 0x04u
#define SH_EXIT 0x18u
#define ADP_APPLICATION_EXIT 0x20026u   /* qemu exits 0 */
#define ADP_RUNTIME_ERROR 0x20023u      /* qemu exits 1 */

extern uint32_t __stack_guard[], __stack_bottom[], __stack_top[];
extern uint32_t __data_start[], __data_end[], __data_load[];
extern uint32_t __bss_start[], __bss_end[], __psram_start[], __psram_end[];
extern char __heap_start[], __heap_end[];

extern int main(void);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);

void Reset_Handler(void);
void m7_reset_c(void);
void HardFault_Handler(void);
void MemManage_Handler(void);
void BusFault_Handler(void);
void UsageFault_Handler(void);
void Other_Handler(void);
void SysTick_Handler(void);
void m7_fault_entry(void);
void m7_fault_report(const uint32_t *frame, uint32_t kind);
void _exit(int status);
void *_sbrk(ptrdiff_t incr);
void _init(void);
void _fini(void);

/* ---- semihosting primitives usable from fault context (no libc) ---- */

static void sh_write0(const char *s)
{
    register uint32_t r0 __asm__("r0") = SH_WRITE0;
    register const char *r1 __asm__("r1") = s;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
}

static __attribute__((noreturn)) void sh_exit(int ok)
{
    register uint32_t r0 __asm__("r0") = SH_EXIT;
    register uint32_t r1 __asm__("r1") = ok ? ADP_APPLICATION_EXIT : ADP_RUNTIME_ERROR;
    __asm__ volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
    for (;;) {
    }
}

/* newlib's exit() ends here after flushing stdio: map status to qemu's. */
void _exit(int status)
{
    sh_exit(status == 0);
}

/* The heap is the rest of PSRAM (rdimon's _sbrk compares against sp, which
 * is below the heap in this layout). */
void *_sbrk(ptrdiff_t incr)
{
    static char *brk = __heap_start;
    char *prev = brk;
    if (incr > __heap_end - brk || incr < __heap_start - brk) {
        errno = ENOMEM;
        return (void *)-1;
    }
    brk += incr;
    return prev;
}

/* __libc_init_array calls these; crti/crtn are not linked (-nostartfiles). */
void _init(void) {}
void _fini(void) {}

/* ---- vector table ---- (no NVIC interrupt is ever enabled, so only the
 * 16 system entries) */
typedef void (*vector_t)(void);
__attribute__((section(".isr_vector"), used)) const vector_t m7_vectors[16] = {
    (vector_t)(uintptr_t)__stack_top,
    Reset_Handler,
    Other_Handler,      /* NMI */
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    0, 0, 0, 0,
    Other_Handler,      /* SVCall */
    Other_Handler,      /* DebugMon */
    0,
    Other_Handler,      /* PendSV */
    SysTick_Handler,
};

/* The FPU is off at reset and C code may use FP registers anywhere (even for
 * plain copies), so enable CP10/CP11 in assembly before entering C. */
__attribute__((naked)) void Reset_Handler(void)
{
    __asm__ volatile(
        "ldr r0, =0xE000ED88\n\t"
        "ldr r1, [r0]\n\t"
        "orr r1, r1, #(0xF << 20)\n\t"
        "str r1, [r0]\n\t"
        "dsb\n\t"
        "isb\n\t"
        "b m7_reset_c\n\t"
        ".ltorg");
}

void m7_reset_c(void)
{
    /* Paint the stack below this frame, keeping 64 bytes clear under sp.
     * volatile keeps gcc from turning this into a memset call whose own
     * frame would be painted over. */
    uint32_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (volatile uint32_t *p = __stack_bottom; (uint32_t)(uintptr_t)p < sp - 64u; p++)
        *p = M7_STACK_PAINT;

    for (uint32_t *s = __data_load, *d = __data_start; d < __data_end;)
        *d++ = *s++;
    for (uint32_t *d = __bss_start; d < __bss_end;)
        *d++ = 0;
    for (uint32_t *d = __psram_start; d < __psram_end;)
        *d++ = 0;

    /* Own handlers for MemManage/BusFault/UsageFault, trap integer /0. */
    SCB_SHCSR |= (1u << 16) | (1u << 17) | (1u << 18);
    SCB_CCR |= 1u << 4; /* DIV_0_TRP; UNALIGN_TRP stays off (M7 does unaligned) */

    /* MPU region 0: no access to the guard under the stack; PRIVDEFENA keeps
     * the default map everywhere else. Size field n means 2^(n+1) bytes. */
    uint32_t guard = (uint32_t)(uintptr_t)__stack_guard;
    uint32_t gsize = (uint32_t)((uintptr_t)__stack_bottom - (uintptr_t)__stack_guard);
    uint32_t n = 0;
    while ((2u << n) < gsize)
        n++;
    MPU_RNR = 0;
    MPU_RBAR = guard;
    MPU_RASR = (1u << 28) /* XN */ | (0u << 24) /* AP: no access */ | (n << 1) | 1u;
    MPU_CTRL = (1u << 2) /* PRIVDEFENA */ | 1u;
    __asm__ volatile("dsb\n\tisb" ::: "memory");

    m7_counter_init();
    initialise_monitor_handles();
    __libc_init_array();
    exit(main());
}

/* ---- faults ---- */

/* Reports run on their own stack: the main one may be what broke. */
uint32_t m7_fault_stack[256];

#define FAULT_STUB(fn, kind) \
    __attribute__((naked)) void fn(void) { __asm__ volatile("movs r1, #" #kind "\n\tb m7_fault_entry"); }
FAULT_STUB(HardFault_Handler, 0)
FAULT_STUB(MemManage_Handler, 1)
FAULT_STUB(BusFault_Handler, 2)
FAULT_STUB(UsageFault_Handler, 3)
FAULT_STUB(Other_Handler, 4)

/* r0 = exception frame (MSP or PSP per EXC_RETURN bit 2), then switch stacks. */
__attribute__((naked)) void m7_fault_entry(void)
{
    __asm__ volatile(
        "tst lr, #4\n\t"
        "ite eq\n\t"
        "mrseq r0, msp\n\t"
        "mrsne r0, psp\n\t"
        "movw r2, #:lower16:m7_fault_stack+1024\n\t"
        "movt r2, #:upper16:m7_fault_stack+1024\n\t"
        "mov sp, r2\n\t"
        "b m7_fault_report");
}

static void put_hex(const char *label, uint32_t v)
{
    char buf[24];
    char *p = buf;
    while (*label)
        *p++ = *label++;
    *p++ = '0';
    *p++ = 'x';
    for (int i = 7; i >= 0; i--)
        *p++ = "0123456789abcdef"[(v >> (4 * i)) & 0xFu];
    *p = 0;
    sh_write0(buf);
}

void m7_fault_report(const uint32_t *frame, uint32_t kind)
{
    static const char *const names[] = {"HardFault", "MemManage", "BusFault", "UsageFault",
                                        "unexpected exception"};
    uint32_t cfsr = SCB_CFSR;
    /* Stacking failed (MSTKERR/STKERR) or the frame lies outside the stack:
     * the stacked PC is not readable. */
    int overflow = frame < __stack_bottom;
    int frame_ok = !(cfsr & ((1u << 4) | (1u << 12))) && !overflow && frame + 8 <= __stack_top;
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));

    sh_write0("\n*** ");
    sh_write0(names[kind < 4 ? kind : 4]);
    if (frame_ok)
        put_hex(" at PC=", frame[6]);
    else
        sh_write0(" at PC=?");
    put_hex(" CFSR=", cfsr);
    if (cfsr & (1u << 7))
        put_hex(" MMFAR=", SCB_MMFAR);
    if (cfsr & (1u << 15))
        put_hex(" BFAR=", SCB_BFAR);
    if (kind == 4)
        put_hex(" IPSR=", ipsr);
    /* CFSR bit names (ARMv7-M ARM B3.2.15). NOCP = FPU used while disabled. */
    static const char *const bits[32] = {
        "IACCVIOL", "DACCVIOL", 0, "MUNSTKERR", "MSTKERR", "MLSPERR", 0, 0,
        "IBUSERR", "PRECISERR", "IMPRECISERR", "UNSTKERR", "STKERR", "LSPERR", 0, 0,
        "UNDEFINSTR", "INVSTATE", "INVPC", "NOCP", 0, 0, 0, 0,
        "UNALIGNED", "DIVBYZERO", 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < 32; i++) {
        if ((cfsr >> i & 1u) && bits[i]) {
            sh_write0(" ");
            sh_write0(bits[i]);
        }
    }
    if (overflow)
        sh_write0(" (stack overflow)");
    sh_write0("\n");
    sh_exit(0);
}
