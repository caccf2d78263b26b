/* Cortex-M3 start-up for the mps2-an385 board layer: vector table, .data copy, .bss clear, main(). */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(void);
void SysTick_Handler(void);
void UART0_RX_Handler(void);
void UART1_RX_Handler(void);

void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata)
        *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;)
        *dst++ = 0;
    main();
    for (;;)
        ;
}

/* A fault stops here; a real board would log it and reset (then the host sees DEVICE_INFO token 0). */
void Default_Handler(void)
{
    for (;;)
        ;
}

__attribute__((section(".isr_vector"), used)) static const void *const vectors[16 + 4] = {
    &_estack, Reset_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,   /* NMI..Usage */
    0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler,                                  /* SVC, Debug, -, PendSV */
    SysTick_Handler,
    UART0_RX_Handler, Default_Handler, UART1_RX_Handler, Default_Handler,                  /* IRQ 0..3 */
};
