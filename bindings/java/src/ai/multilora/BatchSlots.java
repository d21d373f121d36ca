package ai.multilora;

/** A model's slot table for per-row adapters (adapter-aware batching), as {@link Model#batchSlots()} reads it. */
public final class BatchSlots {
    /** Its size S (slot 0 is the base model); 0 when the model is not prepared for batching. */
    public final int slots;
    /** Adapter sets resident now (0..S-1); may change as soon as it is read. */
    public final int resident;

    BatchSlots(int slots, int resident) {
        this.slots = slots;
        this.resident = resident;
    }

    @Override
    public String toString() {
        return "BatchSlots(slots=" + slots + ", resident=" + resident + ")";
    }
}
