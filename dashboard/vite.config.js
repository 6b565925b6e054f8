// Builds the dashboard into dist/ with fixed file names: smsgate embeds dist/index.html,
// dist/assets/app.js and dist/assets/app.css with include_str! (src/observe/web.rs) and
// serves them under /dashboard. Run through scripts/build-dashboard.sh.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/dashboard/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    modulePreload: false,
    rollupOptions: {
      output: {
        entryFileNames: "assets/app.js",
        chunkFileNames: "assets/[name].js",
        assetFileNames: "assets/app[extname]",
      },
    },
  },
});
