package ai.multilora;

/** Runs a model made on each of its sessions since it was created, as {@link Model#sessionRuns()} reads them. */
public final class SessionRuns {
    /** Runs on the LoRA graph's session. */
    public final long lora;
    /** Runs on the base graph's session (0 when the model has none): no row had an adapter. */
    public final long base;

    SessionRuns(long lora, long base) {
        this.lora = lora;
        this.base = base;
    }

    @Override
    public String toString() {
        return "SessionRuns(lora=" + lora + ", base=" + base + ")";
    }
}
