package ai.multilora;

/** Counters of a model's slot table since the model was created, as {@link Model#batchSlotStats()} reads them. */
public final class BatchSlotStats {
    /** A batch's adapter set was resident. */
    public final long hits;
    /** A batch's adapter set was written into a slot. */
    public final long misses;
    /** ... into a slot that held another set (the least recently used one no run pins). */
    public final long evictions;

    BatchSlotStats(long hits, long misses, long evictions) {
        this.hits = hits;
        this.misses = misses;
        this.evictions = evictions;
    }

    @Override
    public String toString() {
        return "BatchSlotStats(hits=" + hits + ", misses=" + misses + ", evictions=" + evictions + ")";
    }
}
