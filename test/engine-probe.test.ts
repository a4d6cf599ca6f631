import { it, expect, vi } from "vitest";
vi.mock("jetflow/workflow", () => import("../runtime/workflow-api.js"));
import * as acts from "../functions/activities/orders.js";
import { order_processing } from "../functions/workflows/order_processing.js";
import { NonRetryableError } from "../runtime/index.js";
it("probe", async () => { expect(typeof acts.validate_order).toBe("function"); expect(order_processing.name).toBe("order_processing");
 await expect(acts.validate_order({orderId:"x", amount: -1, items:[{sku:"a",qty:1}], email:""}, {attempt:1} as any)).rejects.toBeInstanceOf(NonRetryableError); });
