// The OpenAPI document (controller/api/openapi.json) and the code must describe the same routes: every
// route vimd serves is in the document and every controller path of the document is served; the same
// for the agent routes and the agent test double (which plays hostd until hostd exists).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "controller/vimd/server.h"
#include "vim/testing/agent_double.h"

namespace {

using Routes = std::set<std::pair<std::string, std::string>>;

nlohmann::json document() {
    std::ifstream file(VIM_OPENAPI_DOCUMENT);
    return nlohmann::json::parse(file);
}

Routes document_routes(bool agent) {
    Routes routes;
    const auto doc = document();
    for (const auto& [path, operations] : doc["paths"].items()) {
        if (path.starts_with("/agent/") != agent) {
            continue;
        }
        for (const auto& [method, operation] : operations.items()) {
            std::string upper = method;
            std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
            routes.emplace(upper, path);
        }
    }
    return routes;
}

TEST(OpenApi, EveryControllerRouteIsDocumentedAndEveryDocumentedRouteServed) {
    Routes served;
    for (const auto& route : vim::controller::vimd::routes()) {
        served.emplace(route.method, route.path);
    }
    EXPECT_EQ(served, document_routes(false));
    EXPECT_GE(served.size(), 30u);
}

TEST(OpenApi, TheAgentApiIsTheOneTheAgentDoubleServes) {
    const auto agent = vim::testing::AgentDouble::routes();
    EXPECT_EQ(Routes(agent.begin(), agent.end()), document_routes(true));
}

TEST(OpenApi, EveryReferencedSchemaExists) {
    const auto doc = document();
    const std::string text = doc.dump();
    const std::string marker = "#/components/schemas/";
    for (auto at = text.find(marker); at != std::string::npos; at = text.find(marker, at + 1)) {
        const auto end = text.find('"', at);
        const std::string name = text.substr(at + marker.size(), end - at - marker.size());
        EXPECT_TRUE(doc["components"]["schemas"].contains(name)) << name;
    }
    EXPECT_EQ(doc["openapi"], "3.0.3");
}

}  // namespace
